// Per-client quotas (unfinished jobs, submit rate, open sessions) and expiry (sessions,
// idempotency keys), all kept in Redis. Real Redis, the Processing domain called with client ids.
import { Queue } from 'bullmq';
import type { DopsError } from '@dops/errors';
import { processingV1 } from '@dops/proto';
import { connectionOptions } from '@dops/queue';
import { sleep } from '@dops/testing';
import type { Processing, ProcessingOptions } from '../src/index';
import { batchRequest, failure, jobRequest, useProcessingSuite } from './fixture';

const suite = useProcessingSuite();
const setup = (over: Partial<ProcessingOptions>) => suite.setup(over);

const noList = {
  state: processingV1.JobState.UNSPECIFIED,
  sessionId: '',
  batchId: '',
  pageSize: 0,
  pageToken: '',
};

async function listed(processing: Processing, clientId: string): Promise<number> {
  return (await processing.listJobs(clientId, noList)).jobs.length;
}

/** First stages waiting on the shared inference queue. */
async function queuedStages(prefix: string): Promise<number> {
  const q = new Queue('inference', { connection: connectionOptions(suite.redisUrl()), prefix });
  try {
    const counts = await q.getJobCounts('wait', 'prioritized', 'delayed');
    return Object.values(counts).reduce((a, b) => a + b, 0);
  } finally {
    await q.close();
  }
}

function expectExhausted(e: DopsError, quota: string) {
  expect(e.code).toBe('RESOURCE_EXHAUSTED');
  expect(e.retryable).toBe(true);
  expect(e.retryAfterMs).toBeGreaterThan(0);
  expect(e.metadata['quota']).toBe(quota);
}

const defaults = processingV1.SessionDefaults.fromPartial({ modelId: 'm' });

describe('unfinished jobs per client', () => {
  it('refuses a job or batch past the quota with a retry hint, queueing nothing, until one ends', async () => {
    const { prefix, processing } = await setup({ maxQueuedPerClient: 3, retryAfterMs: 1_500 });
    const first = (await processing.submitJob('alice', jobRequest())).job;
    await processing.submitBatch('alice', batchRequest(2));

    const job = await failure(processing.submitJob('alice', jobRequest({ idempotencyKey: 'k' })));
    expectExhausted(job, 'queued_per_client');
    expect(job.retryAfterMs).toBe(1_500);
    expectExhausted(await failure(processing.submitBatch('alice', batchRequest(2))), 'queued_per_client');
    expect(await listed(processing, 'alice')).toBe(3);
    expect(await queuedStages(prefix)).toBe(3);
    expect(await processing.quotas.openJobs('alice')).toBe(3);

    // Another client has its own quota.
    expect((await processing.submitJob('bob', jobRequest())).created).toBe(true);

    // A cancelled job frees its slot; the refused call's idempotency key was not kept.
    await processing.cancelJob('alice', first.id);
    expect(await processing.quotas.openJobs('alice')).toBe(2);
    const later = await processing.submitJob('alice', jobRequest({ idempotencyKey: 'k' }));
    expect(later.created).toBe(true);
    // Full again: retrying the cancelled job would make a fourth.
    expectExhausted(await failure(processing.retryJob('alice', first.id)), 'queued_per_client');
    expect(await processing.getJob('alice', first.id)).toMatchObject({ state: 'CANCELLED', runs: 1 });
  });

  it('refuses, without a retry hint, a batch that could never fit', async () => {
    const { processing } = await setup({ maxQueuedPerClient: 3 });
    const e = await failure(processing.submitBatch('alice', batchRequest(4)));
    expect(e.code).toBe('RESOURCE_EXHAUSTED');
    expect(e.retryable).toBe(false);
    expect(e.retryAfterMs).toBeUndefined();
    expect(await listed(processing, 'alice')).toBe(0);
  });
});

describe('submits per second per client', () => {
  it('refuses the submit past the rate with the time until the next window, queueing nothing', async () => {
    const { prefix, processing } = await setup({ submitsPerSecond: 4, submitBurst: 0 });
    // The first submit opens a one-second window of 4.
    for (let i = 0; i < 4; i++) await processing.submitJob('alice', jobRequest());
    const e = await failure(processing.submitJob('alice', jobRequest()));
    expectExhausted(e, 'submits_per_second');
    expect(e.retryAfterMs).toBeLessThanOrEqual(1_000);
    expectExhausted(await failure(processing.submitBatch('alice', batchRequest(2))), 'submits_per_second');
    expect(await listed(processing, 'alice')).toBe(4);
    expect(await queuedStages(prefix)).toBe(4);
    // Bob has his own rate.
    expect((await processing.submitJob('bob', jobRequest())).created).toBe(true);
    // After the hint, alice may submit again.
    await sleep(e.retryAfterMs! + 20);
    expect((await processing.submitJob('alice', jobRequest())).created).toBe(true);
  });

  it('allows a burst over the rate, then refuses', async () => {
    const { processing } = await setup({ submitsPerSecond: 2, submitBurst: 2 });
    for (let i = 0; i < 4; i++) await processing.submitJob('alice', jobRequest());
    expectExhausted(await failure(processing.submitJob('alice', jobRequest())), 'submits_per_second');
    expect(await listed(processing, 'alice')).toBe(4);
  });
});

describe('open sessions per client', () => {
  it('refuses a session past the quota with the time until one expires; a cancelled one frees its slot', async () => {
    const { processing } = await setup({ maxOpenSessions: 2, sessionTtlMs: 60_000 });
    const first = await processing.createSession('alice', { defaults });
    await processing.createSession('alice', { defaults });
    const e = await failure(processing.createSession('alice', { defaults }));
    expectExhausted(e, 'open_sessions');
    expect(e.retryAfterMs).toBeLessThanOrEqual(60_000);
    expect((await processing.createSession('bob', { defaults })).clientId).toBe('bob');
    await processing.cancelSession('alice', first.id);
    expect((await processing.createSession('alice', { defaults })).state).toBe('ACTIVE');
  });
});

describe('expiry', () => {
  it('expires an unused session (NOT_FOUND, as a missing one) and frees its slot; each use slides it', async () => {
    const { processing, prefix } = await setup({ maxOpenSessions: 1, sessionTtlMs: 600 });
    const session = await processing.createSession('alice', { defaults });
    const job = (await processing.submitJob('alice', jobRequest({ sessionId: session.id }))).job;
    const ttl = await suite.client().pttl(`${prefix}:proc:session:${session.id}`);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(600);
    expect(await suite.client().pttl(`${prefix}:proc:session:${session.id}:jobs`)).toBeGreaterThan(0);
    // Used every 300 ms, it outlives its TTL.
    for (let i = 0; i < 3; i++) {
      await sleep(300);
      await processing.requireSession('alice', session.id);
    }
    await sleep(800);
    const gone = await failure(processing.requireSession('alice', session.id));
    const missing = await failure(processing.requireSession('alice', 'nope'));
    expect(gone.code).toBe('NOT_FOUND');
    expect(gone.message.replace(session.id, 'nope')).toBe(missing.message);
    expect((await failure(processing.submitJob('alice', jobRequest({ sessionId: session.id })))).code).toBe(
      'NOT_FOUND',
    );
    expect(await suite.client().exists(`${prefix}:proc:session:${session.id}:jobs`)).toBe(0);
    // The job itself stays the client's, and the expired session no longer counts as open.
    expect((await processing.getJob('alice', job.id)).state).toBe('QUEUED');
    expect((await processing.createSession('alice', { defaults })).state).toBe('ACTIVE');
  });

  it('forgets an idempotency key after its TTL: the same key then makes a new job', async () => {
    const { processing, prefix } = await setup({ idempotencyTtlMs: 400 });
    const a = await processing.submitJob('alice', jobRequest({ idempotencyKey: 'k' }));
    expect((await processing.submitJob('alice', jobRequest({ idempotencyKey: 'k' }))).job.id).toBe(a.job.id);
    const ttl = await suite.client().pttl(`${prefix}:proc:idem:alice:k`);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(400);
    await sleep(500);
    const b = await processing.submitJob('alice', jobRequest({ idempotencyKey: 'k' }));
    expect(b.created).toBe(true);
    expect(b.job.id).not.toBe(a.job.id);
  });
});
