import { FlowProducer, Queue, QueueEvents } from 'bullmq';
import { DopsError } from '@dops/errors';
import {
  StageWorker,
  connectionOptions,
  createRedis,
  decodeStageError,
  encodeStageError,
  listNodes,
  NodeAnnouncer,
  parseStageJobId,
  publishCancel,
  stageBackoff,
  stageJobId,
  startTestRedis,
  type Redis,
  type StageJobData,
  type TestRedis,
} from './index';

let redis: TestRedis;
let client: Redis;
let n = 0;
const prefix = () => `t${process.pid}x${++n}`;

beforeAll(async () => {
  redis = await startTestRedis();
  client = createRedis(redis.url);
});
afterAll(async () => {
  client.disconnect();
  await redis.stop();
});

function data(jobId: string, over: Partial<StageJobData> = {}): StageJobData {
  return { jobId, stage: 'generate', params: {}, deadlineAt: Date.now() + 60_000, clientId: 'c', ...over };
}

async function harness(p: string, process: ConstructorParameters<typeof StageWorker>[0]['process']) {
  const queue = new Queue('inference', { connection: connectionOptions(redis.url), prefix: p });
  const events = new QueueEvents('inference', { connection: connectionOptions(redis.url), prefix: p });
  await events.waitUntilReady();
  const worker = new StageWorker({
    queues: ['inference'],
    redisUrl: redis.url,
    prefix: p,
    process,
    concurrency: 2,
  });
  await worker.start();
  return {
    queue,
    events,
    close: async () => {
      await worker.close(true);
      await events.close();
      await queue.close();
    },
  };
}

describe('codecs', () => {
  it('round-trips a DopsError through failedReason and marks non-retryable as unrecoverable', () => {
    const e = encodeStageError(DopsError.invalidArgument('params.width', 'bad'));
    expect(e.name).toBe('UnrecoverableError');
    const back = decodeStageError(e.message);
    expect(back.code).toBe('INVALID_ARGUMENT');
    expect(back.violations[0]!.field).toBe('params.width');
    expect(encodeStageError(DopsError.unavailable('x')).name).toBe('Error');
    expect(decodeStageError('job stalled more than allowable limit').code).toBe('INTERNAL');
  });

  it("parses stage job ids; stage retries use BullMQ's exponential backoff with jitter", () => {
    expect(parseStageJobId(stageJobId('a-b', 'safety'))).toEqual({ jobId: 'a-b', stage: 'safety' });
    expect(parseStageJobId('x')).toBeUndefined();
    expect(stageBackoff(100)).toEqual({ type: 'exponential', delay: 100, jitter: 0.5 });
  });
});

describe('StageWorker', () => {
  it('runs a job, reports progress, and hands children results to the parent', async () => {
    const p = prefix();
    const h = await harness(p, async (ctx) => {
      ctx.reportProgress({ step: 1, total: 1 });
      const inputs = await ctx.inputs();
      return {
        images: [
          ...inputs.flatMap((i) => i.images),
          { path: ctx.data.stage, sha256: '', width: 1, height: 1, format: 'png' },
        ],
      };
    });
    const flow = new FlowProducer({ connection: connectionOptions(redis.url), prefix: p });
    await flow.add({
      name: 'upscale',
      queueName: 'inference',
      data: data('j1', { stage: 'upscale' }),
      opts: { jobId: stageJobId('j1', 'upscale') },
      children: [
        {
          name: 'generate',
          queueName: 'inference',
          data: data('j1'),
          opts: { jobId: stageJobId('j1', 'generate'), failParentOnFailure: true },
        },
      ],
    });
    const parent = await h.queue.getJob(stageJobId('j1', 'upscale'));
    const result = await parent!.waitUntilFinished(h.events, 10_000);
    expect(result.images.map((i: { path: string }) => i.path)).toEqual(['generate', 'upscale']);
    await flow.close();
    await h.close();
  });

  it('fails a cancelled job at pick-up and one past its deadline, without running them', async () => {
    const p = prefix();
    const ran: string[] = [];
    const h = await harness(p, async (ctx) => {
      ran.push(ctx.data.jobId);
      return { images: [] };
    });
    await publishCancel(client, p, 'c1');
    const a = await h.queue.add('generate', data('c1'), { jobId: stageJobId('c1', 'generate') });
    const b = await h.queue.add('generate', data('d1', { deadlineAt: Date.now() - 1 }), {
      jobId: stageJobId('d1', 'generate'),
    });
    await expect(a.waitUntilFinished(h.events, 10_000)).rejects.toThrow(/CANCELLED/);
    await expect(b.waitUntilFinished(h.events, 10_000)).rejects.toThrow(/DEADLINE_EXCEEDED/);
    expect(ran).toEqual([]);
    await h.close();
  });

  it('aborts only the cancelled running job and retries retryable errors with dops-jitter', async () => {
    const p = prefix();
    let flaky = 0;
    const h = await harness(p, async (ctx) => {
      if (ctx.data.jobId === 'flaky' && ++flaky < 2) throw DopsError.unavailable('worker restarting');
      if (ctx.data.jobId !== 'long') return { images: [] };
      await new Promise((resolve, reject) => {
        const t = setTimeout(resolve, 5_000);
        ctx.signal.addEventListener('abort', () => {
          clearTimeout(t);
          reject(ctx.signal.reason);
        });
      });
      return { images: [] };
    });
    const long = await h.queue.add('generate', data('long'), { jobId: stageJobId('long', 'generate') });
    const flakyJob = await h.queue.add('generate', data('flaky'), {
      jobId: stageJobId('flaky', 'generate'),
      attempts: 3,
      backoff: stageBackoff(50),
    });
    await new Promise((r) => setTimeout(r, 300));
    await publishCancel(client, p, 'long');
    await expect(long.waitUntilFinished(h.events, 5_000)).rejects.toThrow(/CANCELLED/);
    await expect(flakyJob.waitUntilFinished(h.events, 5_000)).resolves.toEqual({
      images: [],
      finishedAt: expect.any(Number),
    });
    expect(flaky).toBe(2);
    await h.close();
  });
});

describe('NodeAnnouncer', () => {
  it('announces with a TTL and disappears on stop', async () => {
    const p = prefix();
    const announcer = new NodeAnnouncer(client, {
      prefix: p,
      nodeId: 'n1',
      service: 'inference',
      devices: () => [{ id: 'cpu:0', backend: 'cpu', state: 'ready', residentModels: ['m'], activeJobs: 0 }],
    });
    await announcer.start();
    const nodes = await listNodes(client, p);
    expect(nodes[0]!.devices[0]!.residentModels).toEqual(['m']);
    expect(await client.ttl(`${p}:node:n1`)).toBeGreaterThan(0);
    await announcer.stop();
    expect(await listNodes(client, p)).toEqual([]);
  });
});
