// Load test of the public API (processing's gRPC) with ghz: a mixed workload of several models,
// sizes, batches, workflows, reads and cancels from three clients at once, then every accepted job
// followed to its end, and the run held to the profile's thresholds. Writes <out>/<name>.{json,md}
// and the raw ghz reports; exits 1 when a threshold fails.
//   npx tsx tools/load/src/main.ts --target 127.0.0.1:50055 --models <sd15 id>[,<sdxl id>] \
//     [--upscaler <path>] [--profile smoke|full] [--duration 30] [--ca var/credentials/ca.crt] \
//     [--tokens a.token,b.token,c.token] [--out var/load] [--name <file name>]
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import * as path from 'node:path';
import { call } from '@dops/grpc-client';
import { ROOT, type Target, runGhz } from './ghz';
import { drain, processingClient, submitCancelTargets, tally } from './jobs';
import { type LoadReport, evaluate, writeReport } from './report';
import {
  PROFILES,
  type Profile,
  type WorkloadOptions,
  cancelRun,
  cancelTargetSpec,
  scenarios,
} from './workload';

function arg(name: string, fallback?: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : fallback;
}

const log = (msg: string) =>
  process.stdout.write(`[load ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

async function main(): Promise<number> {
  const address = arg('target');
  const models = arg('models')?.split(',').filter(Boolean) ?? [];
  const base = PROFILES[(arg('profile', 'smoke') as Profile['name']) ?? 'smoke'];
  if (!address || models.length === 0 || !base) {
    process.stderr.write(
      'usage: main.ts --target host:port --models <id>[,<id>] [--profile smoke|full] (see tools/load/README.md)\n',
    );
    return 2;
  }
  const duration = arg('duration');
  const profile: Profile = duration ? { ...base, durationS: Number(duration) } : base;
  const cred = path.join(ROOT, 'var/credentials');
  const target: Target = { address, caFile: arg('ca', path.join(cred, 'ca.crt'))! };
  const tokenFiles = arg(
    'tokens',
    ['alice', 'bob', 'demo'].map((n) => path.join(cred, 'tokens', `${n}.token`)).join(','),
  )!.split(',');
  if (tokenFiles.length !== 3) throw new Error('--tokens: three token files, one per client');
  const tokens = tokenFiles.map((f) => readFileSync(f, 'utf8').trim()) as [string, string, string];
  const outDir = path.resolve(arg('out', path.join(ROOT, 'var/load'))!);
  const name = arg('name', `${profile.name}-${new Date().toISOString().replace(/[:.]/g, '-')}`)!;
  const options: WorkloadOptions = { profile, models, upscaler: arg('upscaler'), tokens };

  const ghz =
    arg('ghz') ??
    execFileSync('bash', [path.join(ROOT, 'tools/load/install-ghz.sh')], { encoding: 'utf8' }).trim();
  const clients = tokens.map((t) => processingClient(target, t));
  try {
    log(`${profile.name}: ${profile.cancels} cancel targets (low priority) first`);
    const cancelIds = await submitCancelTargets(clients[0]!, cancelTargetSpec(options), profile.cancels);
    // The service's clock: jobs are found by their created_at, never by this machine's time.
    const { job: first } = await call(
      clients[0]!.getJob,
      { jobId: cancelIds[0] ?? '' },
      { deadlineMs: 10_000 },
    );
    const since = first?.createdAt ?? new Date();
    const runs = [...scenarios(options), cancelRun(options, cancelIds)];
    log(`${runs.length} scenarios for ${profile.durationS} s: ${runs.map((r) => r.name).join(', ')}`);
    const calls = await Promise.all(
      runs.map((r) => runGhz(ghz, target, r, path.join(outDir, `${name}.ghz`))),
    );
    log(`load done; following every job to its end (at most ${profile.thresholds.drainS} s)`);
    const jobs = await drain(clients, since, profile.thresholds.drainS * 1000, (open, total) =>
      log(`  ${open} of ${total} jobs not terminal`),
    );
    const counts = tally(jobs, cancelIds);
    const checks = evaluate(calls, counts, profile.thresholds);
    const report: LoadReport = {
      profile: profile.name,
      target: address,
      startedAt: since.toISOString(),
      host: hostname(),
      thresholds: profile.thresholds,
      calls,
      jobs: counts,
      checks,
      passed: checks.every((c) => c.pass),
    };
    const files = writeReport(outDir, name, report);
    for (const c of checks.filter((x) => !x.pass)) log(`FAIL ${c.name}: ${c.value} (${c.bound})`);
    log(
      `${report.passed ? 'PASSED' : 'FAILED'}: ${counts.total} jobs, ${counts.images} images in ${counts.spanS} s; ${files.md}`,
    );
    return report.passed ? 0 : 1;
  } finally {
    clients.forEach((c) => c.close());
  }
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`load test error: ${err.stack ?? err.message}\n`);
    process.exit(2);
  },
);
