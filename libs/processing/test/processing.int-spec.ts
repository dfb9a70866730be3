import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DopsError } from '@dops/errors';
import { commonV1, inferenceV1, processingV1 } from '@dops/proto';
import {
  NodeAnnouncer,
  StageWorker,
  createRedis,
  type Redis,
  type StageJobData,
  startTestRedis,
  type TestRedis,
} from '@dops/queue';
import { collect, waitFor } from '@dops/testing';
import { Processing, expandBatch, fairPriority } from '../src/index';
import { GENEROUS_QUOTAS, ARTIFACT_ROOT, testArtifacts, writeStageImage } from './fixture';

let redis: TestRedis;
let client: Redis;
let n = 0;

beforeAll(async () => {
  redis = await startTestRedis({ aof: true });
  client = createRedis(redis.url);
});
afterAll(async () => {
  client.disconnect();
  await redis.stop();
});

async function setup(over: Partial<ConstructorParameters<typeof Processing>[0]> = {}) {
  const prefix = `p${process.pid}x${++n}`;
  const announcer = new NodeAnnouncer(client, {
    prefix,
    nodeId: 'fake',
    service: 'inference',
    devices: () => [{ id: 'cpu:0', backend: 'cpu', state: 'busy', residentModels: ['m'], activeJobs: 1 }],
  });
  await announcer.start();
  const processing = new Processing({
    redisUrl: redis.url,
    prefix,
    retentionMs: 60_000,
    maxQueued: 1_000,
    retryAfterMs: 2_000,
    maxBatchItems: 20,
    defaultDeadlineMs: 60_000,
    attempts: 2,
    backoffMs: 10,
    maxImageBytes: 1_000_000,
    inputRoot: join(tmpdir(), 'dops-in'),
    defaultSafety: 'off',
    artifacts: testArtifacts(),
    ...GENEROUS_QUOTAS,
    ...over,
  });
  await processing.start();
  return {
    prefix,
    processing,
    close: async () => {
      await processing.close();
      await announcer.stop();
    },
  };
}

function submit(over: Partial<processingV1.SubmitJobRequest> = {}): processingV1.SubmitJobRequest {
  return {
    idempotencyKey: '',
    sessionId: '',
    priority: processingV1.Priority.NORMAL,
    deadlineSeconds: 0,
    spec: {
      template: 'txt2img',
      safety: commonV1.SafetyPolicy.UNSPECIFIED,
      controlnetImages: [],
      params: inferenceV1.GenerationParams.fromPartial({ modelId: 'm', steps: 1, width: 64, height: 64 }),
    },
    ...over,
  };
}

function stage(prefix: string, ran: string[], slowMs = 0) {
  return new StageWorker({
    queues: ['inference'],
    redisUrl: redis.url,
    prefix,
    concurrency: 1,
    process: async (ctx) => {
      ran.push((ctx.data as StageJobData).jobId);
      if (slowMs)
        await new Promise((resolve, reject) => {
          const t = setTimeout(resolve, slowMs);
          ctx.signal.addEventListener('abort', () => {
            clearTimeout(t);
            reject(ctx.signal.reason);
          });
        });
      return {
        images: [writeStageImage(`${ctx.data.jobId}.png`)],
      };
    },
  });
}

it('submits at once, runs, and watch replays the current state first', async () => {
  const { prefix, processing, close } = await setup();
  const { job } = await processing.submitJob('a', submit());
  expect(job.state).toBe('QUEUED');
  const ran: string[] = [];
  const worker = stage(prefix, ran, 300);
  await worker.start();
  await waitFor(async () => (await processing.getJob('a', job.id)).state === 'RUNNING');
  const ac = new AbortController();
  const events = await collect(processing.watchJob('a', job.id, ac.signal));
  expect(events[0]!.job?.state).toBe(processingV1.JobState.RUNNING);
  expect(events.at(-1)!.job?.state).toBe(processingV1.JobState.SUCCEEDED);
  expect(events.at(-1)!.job?.images[0]!.path).toBe(join(ARTIFACT_ROOT, `${job.id}.png`));
  await worker.close();
  await close();
});

it('gives one job for one idempotency key submitted twice concurrently', async () => {
  const { processing, close } = await setup();
  const [a, b] = await Promise.all([
    processing.submitJob('a', submit({ idempotencyKey: 'k' })),
    processing.submitJob('a', submit({ idempotencyKey: 'k' })),
  ]);
  expect(a.job.id).toBe(b.job.id);
  expect([a.created, b.created].sort()).toEqual([false, true]);
  await close();
});

it('never runs a cancelled queued job; cancels a running one only; retries it', async () => {
  const { prefix, processing, close } = await setup();
  const queued = (await processing.submitJob('a', submit())).job;
  expect((await processing.cancelJob('a', queued.id)).state).toBe('CANCELLED');
  const running = (await processing.submitJob('a', submit())).job;
  const other = (await processing.submitJob('b', submit())).job;
  const ran: string[] = [];
  const worker = stage(prefix, ran, 2_000);
  await worker.start();
  await waitFor(async () => (await processing.getJob('a', running.id)).state === 'RUNNING');
  await processing.cancelJob('a', running.id);
  await waitFor(async () => (await processing.getJob('a', running.id)).state === 'CANCELLED', {
    timeoutMs: 1_000,
  });
  await waitFor(async () => (await processing.getJob('b', other.id)).state === 'SUCCEEDED', {
    timeoutMs: 5_000,
  });
  expect(ran).not.toContain(queued.id);
  await processing.retryJob('a', running.id);
  await waitFor(async () => (await processing.getJob('a', running.id)).state === 'SUCCEEDED', {
    timeoutMs: 5_000,
  });
  await worker.close();
  await close();
});

it('rejects bad input before queueing', async () => {
  const { processing, close } = await setup({ maxQueued: 2 });
  const code = (p: Promise<unknown>) =>
    p.then(
      () => 'ok',
      (e: DopsError) => `${e.code} ${e.violations[0]?.field ?? ''}`.trim(),
    );
  expect(
    await code(processing.submitJob('a', submit({ spec: { ...submit().spec!, template: 'nope' } }))),
  ).toBe('NOT_FOUND spec.template');
  expect(await code(processing.getJob('a', 'missing'))).toBe('NOT_FOUND job_id');
  expect(await code(processing.submitJob('a', submit({ sessionId: 'nope' })))).toMatch(/^NOT_FOUND/);
  expect(
    await code(
      processing.submitJob(
        'a',
        submit({
          spec: { ...submit().spec!, params: inferenceV1.GenerationParams.fromPartial({ modelId: 'zz' }) },
        }),
      ),
    ),
  ).toBe('NOT_FOUND spec.params.model_id');
  expect(
    await code(
      processing.submitJob(
        'a',
        submit({
          spec: {
            ...submit().spec!,
            template: 'img2img',
            initImage: { data: Buffer.from('not an image'), path: '' },
          },
        }),
      ),
    ),
  ).toBe('INVALID_ARGUMENT spec.init_image.data');
  await processing.submitJob('a', submit());
  await processing.submitJob('a', submit());
  const full = await processing.submitJob('a', submit()).catch((e: DopsError) => e);
  expect((full as DopsError).code).toBe('RESOURCE_EXHAUSTED');
  expect((full as DopsError).retryAfterMs).toBe(2_000);
  await close();
});

it('expands batches and rejects unequal zips and oversized batches naming the field', () => {
  const list = (field: string, values: string[]) => ({ field, values });
  expect(
    expandBatch(
      { cartesian: [list('prompt', ['a', 'b']), list('steps', ['1', '2'])], zip: [], repeat: 2 },
      100,
      5,
    ),
  ).toHaveLength(8);
  expect(
    expandBatch(
      { cartesian: [], zip: [list('prompt', ['a', 'b']), list('seed', ['1', '2'])], repeat: 0 },
      100,
      undefined,
    ),
  ).toEqual([
    { prompt: 'a', seed: 1 },
    { prompt: 'b', seed: 2 },
  ]);
  expect(() =>
    expandBatch(
      { cartesian: [], zip: [list('prompt', ['a', 'b']), list('seed', ['1'])], repeat: 0 },
      100,
      undefined,
    ),
  ).toThrow(/expansion.zip\[1\].values/);
  expect(() =>
    expandBatch({ cartesian: [list('seed', ['1', '2', '3'])], zip: [], repeat: 10 }, 20, undefined),
  ).toThrow(/expansion: expands to 30/);
});

it("runs client B's one job before most of client A's twenty", async () => {
  expect(fairPriority(processingV1.Priority.NORMAL, 0)).toBeLessThan(
    fairPriority(processingV1.Priority.NORMAL, 1),
  );
  const { prefix, processing, close } = await setup();
  const batch = await processing.submitBatch('A', {
    idempotencyKey: '',
    sessionId: '',
    spec: submit().spec,
    priority: processingV1.Priority.NORMAL,
    deadlineSeconds: 0,
    expansion: {
      cartesian: [{ field: 'seed', values: Array.from({ length: 20 }, (_, i) => String(i)) }],
      zip: [],
      repeat: 0,
    },
  });
  const b = (await processing.submitJob('B', submit())).job;
  const ran: string[] = [];
  const worker = stage(prefix, ran);
  await worker.start();
  await waitFor(async () => (await processing.getBatch('A', batch.batch.id)).succeeded === 20, {
    timeoutMs: 20_000,
  });
  expect(ran.indexOf(b.id)).toBeLessThan(3);
  await worker.close();
  await close();
});

it('fails a job past its deadline at pick-up, and keeps a queued job across a Redis restart with AOF', async () => {
  const { prefix, processing, close } = await setup();
  const late = (await processing.submitJob('a', submit({ deadlineSeconds: 1 }))).job;
  const kept = (await processing.submitJob('a', submit())).job;
  await new Promise((r) => setTimeout(r, 1_100));
  await redis.restart();
  const ran: string[] = [];
  const worker = stage(prefix, ran);
  await worker.start();
  await waitFor(
    async () =>
      (await processing.getJob('a', late.id).catch(() => undefined))?.error?.code === 'DEADLINE_EXCEEDED',
    { timeoutMs: 10_000 },
  );
  await waitFor(
    async () => (await processing.getJob('a', kept.id).catch(() => undefined))?.state === 'SUCCEEDED',
    { timeoutMs: 10_000 },
  );
  expect(ran).toEqual([kept.id]);
  await worker.close();
  await close();
});

it("reports a failed workflow with the failing stage's own error, not the parent's 'child failed'", async () => {
  const { prefix, processing, close } = await setup();
  const generate = stage(prefix, []);
  const postprocess = new StageWorker({
    queues: ['postprocessing'],
    redisUrl: redis.url,
    prefix,
    concurrency: 1,
    process: async (ctx) => {
      if (ctx.data.stage === 'upscale')
        throw DopsError.invalidArgument('params.model_path', 'no such upscaler');
      return { images: [] };
    },
  });
  await generate.start();
  await postprocess.start();
  try {
    const { job } = await processing.submitJob(
      'a',
      submit({
        spec: {
          ...submit().spec!,
          upscale: { modelPath: '/models/x.safetensors', scale: 2 },
          safety: commonV1.SafetyPolicy.FLAG,
        },
      }),
    );
    expect(job.plan.map((p) => p.stage)).toEqual(['generate', 'upscale', 'safety']);
    await waitFor(async () => (await processing.getJob('a', job.id)).state === 'FAILED', {
      timeoutMs: 20_000,
    });
    const failed = await processing.getJob('a', job.id);
    expect(failed.error).toMatchObject({ code: 'INVALID_ARGUMENT', stage: 'upscale', retryable: false });
    expect(failed.state).toBe('FAILED');
    expect(failed.error?.message).toMatch(/no such upscaler/);
  } finally {
    await generate.close();
    await postprocess.close();
    await close();
  }
}, 60_000);
