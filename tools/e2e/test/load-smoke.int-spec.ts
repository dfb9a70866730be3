// The load test's small run in CI (issue 11 item 6): the real services on CPU with the tiny
// models, driven by tools/load (ghz, installed once into var/) for 20 s with the mixed workload —
// SD 1.5 at two sizes with and without the safety stage, SDXL batches of 1 and 2, txt2img →
// upscale → safety workflows, ListJobs reads and cancels, from three clients — then held to the
// smoke profile's thresholds. The report lands in var/load/smoke-ci.{json,md}.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { type Stack, startStack } from '../src';

const ROOT = path.resolve(__dirname, '../../..');
const OUT = path.join(ROOT, 'var/load');

function runLoad(args: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', path.join(ROOT, 'tools/load/src/main.ts'), ...args],
      { cwd: ROOT, timeout: 560_000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) =>
        resolve({
          code: err ? (typeof err.code === 'number' ? err.code : -1) : 0,
          output: `${stdout}${stderr}`,
        }),
    );
  });
}

describe('load test, smoke profile', () => {
  let stack: Stack;
  beforeAll(async () => {
    // Free ports for the metrics and admin endpoints too: other suites may run beside this one.
    stack = await startStack({ env: { DOPS_METRICS_PORT: '0', DOPS_ADMIN_PORT: '0' } });
  }, 300_000);
  afterAll(async () => {
    await stack?.stop();
  }, 120_000);

  it('passes its thresholds under the mixed workload', async () => {
    const models = [
      await stack.modelId('sd15-tiny.safetensors'),
      await stack.modelId('sdxl-tiny.safetensors'),
    ];
    const run = await runLoad([
      '--target',
      stack.processing.address,
      '--models',
      models.join(','),
      '--upscaler',
      'upscaler-compact-2x-tiny.safetensors',
      '--profile',
      'smoke',
      '--out',
      OUT,
      '--name',
      'smoke-ci',
    ]);
    const report = JSON.parse(readFileSync(path.join(OUT, 'smoke-ci.json'), 'utf8'));
    if (run.code !== 0) process.stderr.write(`${run.output}\n${stack.logs()}\n`);
    expect(report.checks.filter((c: { pass: boolean }) => !c.pass)).toEqual([]);
    expect(run.code).toBe(0);
    // Every scenario ran, and the workload was the mixed one it claims.
    expect(report.calls.map((c: { name: string }) => c.name).sort()).toEqual([
      'cancel',
      'list-jobs',
      'sd15-txt2img',
      'sdxl-batches',
      'workflow-upscale-safety',
    ]);
    expect(report.jobs.byState.JOB_STATE_SUCCEEDED).toBeGreaterThan(30);
    expect(report.jobs.cancelTargets.JOB_STATE_CANCELLED).toBeGreaterThan(0);
    expect(report.jobs.images).toBeGreaterThan(report.jobs.byState.JOB_STATE_SUCCEEDED);
  }, 600_000);
});
