// Artifacts over the real stack: a client downloads its images by bytes and sha256 through the
// processing API (another client cannot), the CLI writes what it downloaded, Ctrl-C on the CLI
// cancels the job it started, and a finished stack's artifact root holds exactly the images of
// the jobs that succeeded: no intermediate stage outputs, nothing of cancelled jobs.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { DopsError } from '@dops/errors';
import { call, createClient, stream } from '@dops/grpc-client';
import { commonV1, inferenceV1, processingV1 } from '@dops/proto';
import { collect, devCredentialsDir, testCredentials, waitFor } from '@dops/testing';
import { startStack, type Stack } from '../src/stack';

const DOPS = path.resolve(__dirname, '../../../apps/cli/bin/dops');
const { JobState } = processingV1;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
let stack: Stack;
let model = '';
const succeeded: processingV1.Job[] = [];

beforeAll(async () => {
  stack = await startStack();
  model = await stack.modelId('sd15-tiny.safetensors');
}, 300_000);
afterAll(async () => {
  await stack?.stop();
}, 120_000);

function request(
  over: Partial<inferenceV1.GenerationParams> = {},
  extra: Partial<processingV1.JobSpec> = {},
) {
  return processingV1.SubmitJobRequest.fromPartial({
    spec: {
      template: 'txt2img',
      safety: commonV1.SafetyPolicy.OFF,
      params: { modelId: model, prompt: 'a lighthouse', width: 64, height: 64, steps: 2, seed: 3, ...over },
      ...extra,
    },
  });
}

async function terminal(jobId: string): Promise<processingV1.Job> {
  return waitFor(
    async () => {
      const { job } = await call(stack.client.getJob, { jobId }, { deadlineMs: 10_000 });
      return job && [JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED].includes(job.state)
        ? job
        : undefined;
    },
    { timeoutMs: 180_000, intervalMs: 250, description: `job ${jobId} terminal` },
  );
}

/** The CLI as `alice`, against this stack; resolves with its exit code and output. */
function dops(args: string[], onStderr?: (text: string, child: ReturnType<typeof spawn>) => void) {
  const child = spawn(
    DOPS,
    [
      '--processing',
      stack.processing.address,
      '--model-service',
      stack.nodes[0]!.model.address,
      '--token-file',
      path.join(devCredentialsDir(), 'tokens', 'alice.token'),
      ...args,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
    onStderr?.(stderr, child);
  });
  return new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>(
    (resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })),
  );
}

it('downloads a txt2img → upscale image by bytes and sha256; another client gets NOT_FOUND', async () => {
  const { job } = await call(
    stack.client.submitJob,
    request({}, { upscale: { modelPath: 'upscaler-compact-2x-tiny.safetensors' } }),
    { deadlineMs: 15_000 },
  );
  const done = await terminal(job!.id);
  expect(done.state).toBe(JobState.SUCCEEDED);
  succeeded.push(done);
  const image = done.images[0]!;
  expect(image.id).toMatch(/^[0-9a-f]{64}$/);

  const messages = await collect(
    stream(stack.client.downloadArtifact, { artifactId: image.id!, inlineMaxBytes: 0 }),
  );
  const bytes = Buffer.concat(messages.map((m) => Buffer.from(m.data)));
  expect(messages[0]!.header).toMatchObject({
    artifactId: image.id,
    sizeBytes: bytes.length,
    format: 'png',
    width: 128,
    height: 128,
  });
  expect(sha256(bytes)).toBe(messages[0]!.header!.sha256);
  expect(sha256(bytes)).toBe(image.id);
  expect(bytes.subarray(1, 4).toString('latin1')).toBe('PNG');

  const bob = createClient(processingV1.ProcessingServiceClient, stack.processing.address, {
    credentials: testCredentials('bob'),
  });
  try {
    const refused = await collect(
      stream(bob.downloadArtifact, { artifactId: image.id!, inlineMaxBytes: 0 }),
    ).catch((e: unknown) => e as DopsError);
    expect((refused as DopsError).code).toBe('NOT_FOUND');
  } finally {
    bob.close();
  }
}, 240_000);

it('CLI: --out writes the downloaded, verified bytes', async () => {
  const out = mkdtempSync(path.join(tmpdir(), 'dops-cli-out-'));
  const r = await dops([
    '--json',
    'submit',
    '-m',
    'sd15-tiny.safetensors',
    '-p',
    'a fox',
    '-W',
    '64',
    '-H',
    '64',
    '-s',
    '2',
    '--safety',
    'off',
    '--out',
    out,
  ]);
  expect(r.code).toBe(0);
  const result = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as {
    jobs: processingV1.Job[];
    files: string[];
  };
  const job = (await call(stack.client.getJob, { jobId: result.jobs[0]!.id })).job!;
  succeeded.push(job);
  expect(result.files).toEqual([path.join(out, `${job.id}-0.png`)]);
  expect(sha256(readFileSync(result.files[0]!))).toBe(job.images[0]!.id);
}, 240_000);

it('CLI: Ctrl-C cancels the job it started (exit 130); --on-interrupt leave does not', async () => {
  const args = [
    'submit',
    '-m',
    'sd15-tiny.safetensors',
    '-p',
    'slow',
    '-W',
    '256',
    '-H',
    '256',
    '-s',
    '150',
    '--safety',
    'off',
  ];
  let cancelled = '';
  const r = await dops(args, (stderr, child) => {
    const id = /submitted (\w+)/.exec(stderr)?.[1];
    if (id && !cancelled) {
      cancelled = id;
      child.kill('SIGINT');
    }
  });
  expect(r.code).toBe(130);
  expect(r.stderr).toMatch(new RegExp(`interrupted: ${cancelled}`));
  expect((await terminal(cancelled)).state).toBe(JobState.CANCELLED);

  let left = '';
  const leave = await dops(
    [...args, '-s', '4', '-W', '64', '-H', '64', '--on-interrupt', 'leave'],
    (stderr, child) => {
      const id = /submitted (\w+)/.exec(stderr)?.[1];
      if (id && !left) {
        left = id;
        child.kill('SIGINT');
      }
    },
  );
  expect(leave.code).toBe(130);
  const kept = await terminal(left);
  expect(kept.state).toBe(JobState.SUCCEEDED);
  succeeded.push(kept);
}, 300_000);

// ControlNets are not in this run: the model registry lists the tiny diffusers ControlNet folder's
// weight file, which the worker cannot load as a single file (reported; the CLI's ControlNet
// request is covered by apps/cli submit.spec.ts).
it('CLI: a seed batch with a LoRA, and a session, over the real services', async () => {
  const out = mkdtempSync(path.join(tmpdir(), 'dops-cli-batch-'));
  const r = await dops([
    '--json',
    'submit',
    '-m',
    'sd15-tiny.safetensors',
    '-p',
    'a fox',
    '-W',
    '64',
    '-H',
    '64',
    '-s',
    '2',
    '--safety',
    'off',
    '--seeds',
    '11,12',
    '--lora',
    'lora-kohya-sd15-tiny.safetensors:0.5',
    '--out',
    out,
  ]);
  if (r.code !== 0) throw new Error(`dops exited ${r.code}: ${r.stderr}`);
  const result = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as {
    jobs: processingV1.Job[];
    files: string[];
  };
  expect(result.jobs).toHaveLength(2);
  expect(result.jobs[0]!.batchId).not.toBe('');
  const texts = result.files.map((f) => readFileSync(f).toString('latin1'));
  expect(texts.map((t) => /Seed: (\d+)/.exec(t)?.[1]).sort()).toEqual(['11', '12']);
  for (const t of texts) expect(t).toMatch(/Lora hashes/);
  succeeded.push(...result.jobs);

  const created = await dops([
    '--json',
    'session',
    'create',
    '-m',
    'sd15-tiny.safetensors',
    '-W',
    '64',
    '-H',
    '64',
  ]);
  expect(created.code).toBe(0);
  const sessionId = (JSON.parse(created.stdout) as { session: processingV1.Session }).session.id;
  const inSession = await dops([
    '--json',
    'submit',
    '--session',
    sessionId,
    '-p',
    'x',
    '-s',
    '1',
    '--safety',
    'off',
  ]);
  expect(inSession.code).toBe(0);
  const job = (JSON.parse(inSession.stdout.trim().split('\n').at(-1)!) as { jobs: processingV1.Job[] })
    .jobs[0]!;
  expect(job).toMatchObject({ sessionId, images: [{ width: 64, height: 64 }] });
  succeeded.push(job);
  const cancelled = await dops(['--json', 'session', 'cancel', sessionId]);
  expect(JSON.parse(cancelled.stdout).session.state).toBe('SESSION_STATE_CANCELLED');
}, 300_000);

it('CLI: names an unknown flag as such', async () => {
  const r = await dops(['submit', '--no-such-flag', '-p', 'x']);
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/unknown option '--no-such-flag'/);
  const missing = await dops(['submit', '--no-such-flag']);
  expect(missing.stderr).toMatch(/unknown option '--no-such-flag'/);
}, 60_000);

it('leaves exactly the succeeded jobs’ images in the artifact root', async () => {
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true }))
      if (e.isDirectory()) walk(path.join(dir, e.name));
      else files.push(path.join(dir, e.name));
  };
  await waitFor(
    () => {
      files.length = 0;
      walk(stack.artifactRoot);
      return files.length === succeeded.length;
    },
    { timeoutMs: 20_000, description: 'only published images left' },
  ).catch(() => undefined);
  expect(files.sort()).toEqual(succeeded.map((j) => j.images[0]!.path).sort());
}, 60_000);
