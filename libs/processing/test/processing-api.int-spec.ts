// The processing service over real gRPC (startTestServer + createClient), real Redis and real
// BullMQ, with cheap StageWorkers standing in for the inference consumers.
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { DopsError } from '@dops/errors';
import { call, createClient, stream } from '@dops/grpc-client';
import { commonV1, inferenceV1, modelV1, processingV1 } from '@dops/proto';
import {
  NodeAnnouncer,
  StageWorker,
  connectionOptions,
  createRedis,
  stageJobId,
  startTestRedis,
  type AnnouncedDevice,
  type Redis,
  type StageContext,
  type StageResult,
  type TestRedis,
} from '@dops/queue';
import {
  anonymousCredentials,
  collect,
  sleep,
  startTestServer,
  testCredentials,
  waitFor,
} from '@dops/testing';
import { Processing, processingService } from '../src/index';
import { GENEROUS_QUOTAS, ARTIFACT_ROOT, testArtifacts, writeStageImage } from './fixture';

const S = processingV1.JobState;

let redis: TestRedis;
let client: Redis;
let n = 0;
const cleanup: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  redis = await startTestRedis();
  client = createRedis(redis.url);
});
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!().catch(() => undefined);
});
afterAll(async () => {
  client.disconnect();
  await redis.stop();
});

async function announce(prefix: string, nodeId: string, devices: AnnouncedDevice[]) {
  const announcer = new NodeAnnouncer(client, {
    prefix,
    nodeId,
    service: 'inference',
    devices: () => devices,
  });
  await announcer.start();
  cleanup.push(() => announcer.stop());
  return announcer;
}

/** Processing behind a real gRPC server on port 0, and a real client of it. */
async function setup(over: Partial<ConstructorParameters<typeof Processing>[0]> = {}) {
  const prefix = `api${process.pid}x${++n}`;
  // A busy node holds model 'm': 'm' exists, and its jobs go to the shared inference queue.
  await announce(prefix, 'fake', [
    { id: 'cpu:0', backend: 'cpu', state: 'busy', residentModels: ['m'], activeJobs: 1 },
  ]);
  const processing = new Processing({
    redisUrl: redis.url,
    prefix,
    retentionMs: 60_000,
    maxQueued: 1_000,
    retryAfterMs: 2_000,
    maxBatchItems: 20,
    defaultDeadlineMs: 60_000,
    attempts: 1,
    backoffMs: 10,
    maxImageBytes: 1_000_000,
    inputRoot: join(tmpdir(), 'dops-in'),
    defaultSafety: 'off',
    artifacts: testArtifacts(),
    ...GENEROUS_QUOTAS,
    ...over,
  });
  await processing.start();
  const server = await startTestServer([processingService(processing)]);
  cleanup.push(
    () => processing.close(),
    () => server.stop(),
  );
  /** A client calling with the development credential of `name` (a client identity). */
  const as = (name: string) => {
    const c = createClient(processingV1.ProcessingServiceClient, server.address, {
      deadlineMs: 10_000,
      credentials: testCredentials(name),
    });
    cleanup.push(async () => c.close());
    return c;
  };
  return { prefix, processing, server, api: as('alice'), as };
}

type Api = Awaited<ReturnType<typeof setup>>['api'];

function params(over: Partial<inferenceV1.GenerationParams> = {}) {
  return inferenceV1.GenerationParams.fromPartial({ modelId: 'm', steps: 1, width: 64, height: 64, ...over });
}

function submitReq(over: Partial<processingV1.SubmitJobRequest> = {}): processingV1.SubmitJobRequest {
  return {
    idempotencyKey: '',
    sessionId: '',
    priority: processingV1.Priority.NORMAL,
    deadlineSeconds: 0,
    spec: {
      template: 'txt2img',
      safety: commonV1.SafetyPolicy.UNSPECIFIED,
      controlnetImages: [],
      params: params(),
    },
    ...over,
  };
}

async function submit(
  api: Api,
  over: Partial<processingV1.SubmitJobRequest> = {},
): Promise<processingV1.Job> {
  return (await call(api.submitJob, submitReq(over))).job!;
}

async function getJob(api: Api, jobId: string): Promise<processingV1.Job> {
  return (await call(api.getJob, { jobId })).job!;
}

function until(api: Api, jobId: string, state: processingV1.JobState, timeoutMs = 5_000) {
  return waitFor(async () => ((await getJob(api, jobId)).state === state ? true : undefined), {
    timeoutMs,
    description: `job ${jobId} in state ${state}`,
  });
}

/** The gRPC status code name a call fails with ('ok' when it does not). */
function codeOf(p: Promise<unknown>): Promise<string> {
  return p.then(
    () => 'ok',
    (e: unknown) => (e instanceof DopsError ? e.code : `not a DopsError: ${String(e)}`),
  );
}

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** Resolves with `p`, rejects with the signal's reason when it aborts first. */
function abortable(p: Promise<unknown>, signal: AbortSignal): Promise<unknown> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    signal.addEventListener('abort', () => reject(signal.reason), { once: true });
    p.then(resolve, reject);
  });
}

interface Ran {
  jobId: string;
  params: Record<string, unknown>;
}

/** A real StageWorker on `queues`; `body` runs inside each stage job (default: returns at once). */
async function worker(
  prefix: string,
  ran: Ran[],
  body: (ctx: StageContext<Record<string, unknown>>) => Promise<unknown> = async () => undefined,
  queues: string[] = ['inference'],
) {
  const w = new StageWorker({
    queues,
    redisUrl: redis.url,
    prefix,
    concurrency: 1,
    process: async (ctx): Promise<StageResult> => {
      ran.push({ jobId: ctx.data.jobId, params: ctx.data.params });
      await body(ctx);
      return {
        images: [writeStageImage(`${ctx.data.jobId}.png`)],
      };
    },
  });
  await w.start();
  cleanup.push(() => w.close(true));
  return w;
}

describe('WatchJob over gRPC', () => {
  it('sends the current state first, resumes after a reconnect and ends after the terminal job', async () => {
    const { prefix, server, api } = await setup();
    const job = await submit(api);

    // Queued, no worker yet: the job first, then its queue position.
    const watch = stream(api.watchJob, { jobId: job.id });
    const seen: processingV1.WatchJobResponse[] = [(await watch.next()).value!, (await watch.next()).value!];
    expect(seen[0]!.job).toMatchObject({ id: job.id, state: S.QUEUED, held: false, runs: 1 });
    expect(seen[1]!.queued).toEqual({ ahead: 0 });

    const gate = deferred();
    await worker(prefix, [], async (ctx) => {
      ctx.reportProgress({ step: 1, total: 3 });
      await abortable(gate.promise, ctx.signal);
      ctx.reportProgress({ step: 2, total: 3 });
      await sleep(50);
      ctx.reportProgress({ step: 3, total: 3 });
      await sleep(50);
    });

    // Watch until step 1, the stage's start and the RUNNING job (separate BullMQ events: they may
    // be read in any order), then disconnect mid-job.
    const started = (m: processingV1.WatchJobResponse) =>
      m.stage?.stage === 'generate' && m.stage.status === 'started';
    const running = (m: processingV1.WatchJobResponse) => m.job?.state === S.RUNNING;
    for await (const m of watch) {
      seen.push(m);
      if (seen.some((s) => s.progress?.step === 1) && seen.some(started) && seen.some(running)) break;
    }
    expect(seen.some(started)).toBe(true);
    expect(seen.some((m) => m.job?.state === S.RUNNING)).toBe(true);
    // The server side of the dropped stream ends.
    await waitFor(() => server.server.inflightCalls === 0, { description: 'watch ended on the server' });

    // Reconnect: the current state first, then only what happens after it.
    const again = stream(api.watchJob, { jobId: job.id });
    const rest = collect(again);
    await sleep(200);
    gate.resolve();
    const events = await rest;
    expect(events[0]!.job).toMatchObject({ id: job.id, state: S.RUNNING, stage: 'generate' });
    const later = events.slice(1);
    expect(later.some((m) => m.stage?.status === 'started')).toBe(false);
    expect(later.some((m) => m.progress?.step === 1)).toBe(false);
    expect(later.filter((m) => m.progress).map((m) => m.progress!.step)).toEqual([2, 3]);
    expect(later.some((m) => m.stage?.stage === 'generate' && m.stage.status === 'completed')).toBe(true);
    // The stream ended right after the terminal job message, and it is the only terminal one.
    expect(events.at(-1)!.job).toMatchObject({
      state: S.SUCCEEDED,
      images: [{ path: join(ARTIFACT_ROOT, `${job.id}.png`) }],
    });
    expect(events.filter((m) => m.job?.state === S.SUCCEEDED)).toHaveLength(1);

    // A terminal job: just the job, then the end.
    const done = await collect(stream(api.watchJob, { jobId: job.id }));
    expect(done).toHaveLength(1);
    expect(done[0]!.job?.state).toBe(S.SUCCEEDED);
  });

  it('answers NOT_FOUND for an unknown job', async () => {
    const { api } = await setup();
    expect(await codeOf(collect(stream(api.watchJob, { jobId: 'nope' })))).toBe('NOT_FOUND');
    expect(await codeOf(collect(stream(api.watchJob, { jobId: '' })))).toBe('NOT_FOUND');
  });
});

describe('sessions', () => {
  const defaults = (over: Partial<processingV1.SessionDefaults> = {}) =>
    processingV1.SessionDefaults.fromPartial({ modelId: 'm', width: 128, height: 96, ...over });

  it('fills empty fields from the session defaults and only those', async () => {
    const { prefix, api } = await setup();
    const { session } = await call(api.createSession, { defaults: defaults() });
    expect(session).toMatchObject({ clientId: 'alice', state: processingV1.SessionState.ACTIVE });
    expect(session!.defaults).toMatchObject({ modelId: 'm', width: 128, height: 96 });
    const bare = inferenceV1.GenerationParams.fromPartial({ steps: 1 });
    const a = await submit(api, { sessionId: session!.id, spec: { ...submitReq().spec!, params: bare } });
    const b = await submit(api, {
      sessionId: session!.id,
      spec: { ...submitReq().spec!, params: params({ width: 256 }) },
    });
    expect(a.sessionId).toBe(session!.id);
    const ran: Ran[] = [];
    await worker(prefix, ran);
    await until(api, a.id, S.SUCCEEDED);
    await until(api, b.id, S.SUCCEEDED);
    const pa = ran.find((r) => r.jobId === a.id)!.params;
    const pb = ran.find((r) => r.jobId === b.id)!.params;
    expect(pa).toMatchObject({ modelId: 'm', width: 128, height: 96 });
    expect(pb).toMatchObject({ modelId: 'm', width: 256, height: 64 });
    // Without the session the same bare spec is rejected: the model came from the defaults.
    expect(await codeOf(submit(api, { spec: { ...submitReq().spec!, params: bare } }))).toBe(
      'INVALID_ARGUMENT',
    );
  });

  it('holds queued jobs while paused and runs them after resume', async () => {
    const { prefix, api, as } = await setup();
    const { session } = await call(api.createSession, { defaults: defaults() });
    const sid = session!.id;
    const before = await submit(api, { sessionId: sid });
    const paused = await call(api.pauseSession, { sessionId: sid });
    expect(paused.session!.state).toBe(processingV1.SessionState.PAUSED);
    expect((await call(api.getSession, { sessionId: sid })).session!.state).toBe(
      processingV1.SessionState.PAUSED,
    );
    const during = await submit(api, { sessionId: sid });
    expect(during).toMatchObject({ state: S.QUEUED, held: true });
    expect(await getJob(api, before.id)).toMatchObject({ state: S.QUEUED, held: true });
    // A held job's watch starts with the held job and no queue position.
    const watch = await collect(stream(api.watchJob, { jobId: before.id }), 1);
    expect(watch[0]!.job).toMatchObject({ state: S.QUEUED, held: true });

    const ran: Ran[] = [];
    await worker(prefix, ran);
    const bob = as('bob');
    const outsider = await submit(bob);
    await until(bob, outsider.id, S.SUCCEEDED);
    await sleep(300);
    expect(ran.map((r) => r.jobId)).toEqual([outsider.id]);
    for (const id of [before.id, during.id])
      expect(await getJob(api, id)).toMatchObject({ state: S.QUEUED, held: true });
    const listed = await call(api.listJobs, {
      state: S.QUEUED,
      sessionId: sid,
      batchId: '',
      pageSize: 0,
      pageToken: '',
    });
    expect(listed.jobs.map((j) => j.id).sort()).toEqual([before.id, during.id].sort());

    const resumed = await call(api.resumeSession, { sessionId: sid });
    expect(resumed.session!.state).toBe(processingV1.SessionState.ACTIVE);
    for (const id of [before.id, during.id]) await until(api, id, S.SUCCEEDED);
    for (const id of [before.id, during.id]) expect((await getJob(api, id)).held).toBe(false);
    expect(ran).toHaveLength(3);
  });

  it('cancels every unfinished job of the session and only those; then takes no more jobs', async () => {
    const { prefix, api, as } = await setup();
    const bob = as('bob');
    const mk = async () => (await call(api.createSession, { defaults: defaults() })).session!.id;
    const [sid, other] = [await mk(), await mk()];
    const gate = deferred();
    const ran: Ran[] = [];
    await worker(prefix, ran, async (ctx) => {
      if (ctx.data.params['seed'] !== 1) await abortable(gate.promise, ctx.signal);
    });
    const finished = await submit(api, {
      sessionId: sid,
      spec: { ...submitReq().spec!, params: params({ seed: 1 }) },
    });
    await until(api, finished.id, S.SUCCEEDED);
    const running = await submit(api, { sessionId: sid });
    await until(api, running.id, S.RUNNING);
    const queued = await submit(api, { sessionId: sid });
    const otherSession = await submit(api, { sessionId: other });
    const otherClient = await submit(bob);

    const { session } = await call(api.cancelSession, { sessionId: sid });
    expect(session!.state).toBe(processingV1.SessionState.CANCELLED);
    await until(api, running.id, S.CANCELLED);
    expect(await getJob(api, queued.id)).toMatchObject({
      state: S.CANCELLED,
      error: { code: commonV1.ErrorCode.CANCELLED },
    });
    expect((await getJob(api, running.id)).error?.code).toBe(commonV1.ErrorCode.CANCELLED);
    expect(await getJob(api, finished.id)).toMatchObject({ state: S.SUCCEEDED, error: undefined });
    gate.resolve();
    await until(api, otherSession.id, S.SUCCEEDED);
    await until(bob, otherClient.id, S.SUCCEEDED);
    expect(ran.map((r) => r.jobId)).not.toContain(queued.id);

    // A cancelled session takes no more jobs and cannot be paused or resumed.
    expect(await codeOf(submit(api, { sessionId: sid }))).toBe('FAILED_PRECONDITION');
    expect(
      await codeOf(
        call(api.submitBatch, {
          ...submitReq({ sessionId: sid }),
          expansion: { cartesian: [{ field: 'seed', values: ['1', '2'] }], zip: [], repeat: 0 },
        }),
      ),
    ).toBe('FAILED_PRECONDITION');
    expect(await codeOf(call(api.pauseSession, { sessionId: sid }))).toBe('FAILED_PRECONDITION');
    expect(await codeOf(call(api.resumeSession, { sessionId: sid }))).toBe('FAILED_PRECONDITION');
    const listed = await call(api.listJobs, {
      state: S.UNSPECIFIED,
      sessionId: sid,
      batchId: '',
      pageSize: 0,
      pageToken: '',
    });
    expect(listed.jobs).toHaveLength(3);
  });

  it('answers NOT_FOUND for an unknown session', async () => {
    const { api } = await setup();
    const codes = await Promise.all(
      [
        call(api.getSession, { sessionId: 'nope' }),
        call(api.pauseSession, { sessionId: 'nope' }),
        call(api.resumeSession, { sessionId: 'nope' }),
        call(api.cancelSession, { sessionId: 'nope' }),
        submit(api, { sessionId: 'nope' }),
        call(api.listJobs, {
          state: S.UNSPECIFIED,
          sessionId: 'nope',
          batchId: '',
          pageSize: 0,
          pageToken: '',
        }),
      ].map(codeOf),
    );
    expect(codes).toEqual(Array(6).fill('NOT_FOUND'));
  });
});

describe('batches', () => {
  const batchReq = (values: string[], over: Partial<processingV1.SubmitBatchRequest> = {}) => ({
    ...submitReq(),
    expansion: { cartesian: [{ field: 'seed', values }], zip: [], repeat: 0 },
    ...over,
  });

  it('returns a batch id and N job ids at once and counts states up to all succeeded', async () => {
    const { prefix, api } = await setup();
    const res = await call(api.submitBatch, batchReq(['1', '2', '3', '4']));
    expect(res.created).toBe(true);
    const b = res.batch!;
    expect(b.id).toMatch(/^[0-9a-f]{32}$/);
    expect(new Set(b.jobIds).size).toBe(4);
    expect(b).toMatchObject({
      state: S.QUEUED,
      queued: 4,
      running: 0,
      succeeded: 0,
      failed: 0,
      cancelled: 0,
    });
    for (const id of b.jobIds)
      expect(await getJob(api, id)).toMatchObject({ batchId: b.id, state: S.QUEUED });
    const ran: Ran[] = [];
    await worker(prefix, ran, () => sleep(30));
    const final = await waitFor(
      async () => {
        const now = (await call(api.getBatch, { batchId: b.id })).batch!;
        expect(now.queued + now.running + now.succeeded + now.failed + now.cancelled).toBe(4);
        return now.succeeded === 4 ? now : undefined;
      },
      { timeoutMs: 10_000 },
    );
    expect(final.state).toBe(S.SUCCEEDED);
    expect(ran.map((r) => r.params['seed']).sort()).toEqual([1, 2, 3, 4]);
    expect(await codeOf(call(api.getBatch, { batchId: 'nope' }))).toBe('NOT_FOUND');
    expect(await codeOf(call(api.cancelBatch, { batchId: 'nope' }))).toBe('NOT_FOUND');
  });

  it("cancels the batch's unfinished jobs only", async () => {
    const { prefix, api } = await setup();
    const gate = deferred();
    const ran: Ran[] = [];
    await worker(prefix, ran, async (ctx) => {
      if (ctx.data.params['seed'] !== 1) await abortable(gate.promise, ctx.signal);
    });
    const b = (await call(api.submitBatch, batchReq(['1', '2', '3', '4']))).batch!;
    const [done, running, ...queued] = b.jobIds;
    await until(api, done!, S.SUCCEEDED);
    await until(api, running!, S.RUNNING);
    // Same client, so it queues behind the batch's queued items (fair priority).
    const outsider = await submit(api);
    const cancelled = (await call(api.cancelBatch, { batchId: b.id })).batch!;
    expect(cancelled.succeeded).toBe(1);
    expect(cancelled.queued).toBe(0);
    const final = await waitFor(
      async () => {
        const now = (await call(api.getBatch, { batchId: b.id })).batch!;
        return now.cancelled === 3 ? now : undefined;
      },
      { timeoutMs: 5_000 },
    );
    expect(final).toMatchObject({ state: S.CANCELLED, queued: 0, running: 0, succeeded: 1, failed: 0 });
    expect(await getJob(api, done!)).toMatchObject({ state: S.SUCCEEDED });
    gate.resolve();
    await until(api, outsider.id, S.SUCCEEDED);
    for (const id of queued) expect(ran.map((r) => r.jobId)).not.toContain(id);
  });
});

describe('model affinity', () => {
  it('bounds every queue a job can land in: jobs routed to a node’s own queue count too', async () => {
    const { prefix, api } = await setup({ maxQueued: 5, retryAfterMs: 2_000 });
    await announce(prefix, 'n1', [
      { id: 'cpu:0', backend: 'cpu', state: 'ready', residentModels: ['m1'], activeJobs: 0 },
    ]);
    const onNode = { spec: { ...submitReq().spec!, params: params({ modelId: 'm1' }) } };
    for (let i = 0; i < 5; i++) await submit(api, onNode);
    const full = await call(api.submitJob, submitReq(onNode)).catch((e: unknown) => e as DopsError);
    expect(full).toMatchObject({ code: 'RESOURCE_EXHAUSTED', retryable: true, retryAfterMs: 2_000 });
    const { jobs } = await call(api.listJobs, processingV1.ListJobsRequest.fromPartial({ pageSize: 50 }));
    expect(jobs).toHaveLength(5);
  });

  it('sends a job to the node holding its model, and one for a known unloaded model to the shared queue', async () => {
    const { prefix, api } = await setup({
      catalog: {
        get: async (ref) =>
          'id' in ref && ref.id === 'm2'
            ? modelV1.Model.fromPartial({
                id: 'm2',
                type: modelV1.ModelType.CHECKPOINT,
                status: modelV1.ModelStatus.OK,
              })
            : undefined,
      },
    });
    await announce(prefix, 'n1', [
      { id: 'cpu:0', backend: 'cpu', state: 'ready', residentModels: ['m1'], activeJobs: 0 },
    ]);
    const onNode = await submit(api, { spec: { ...submitReq().spec!, params: params({ modelId: 'm1' }) } });
    const shared = await submit(api, { spec: { ...submitReq().spec!, params: params({ modelId: 'm2' }) } });
    expect(
      await codeOf(submit(api, { spec: { ...submitReq().spec!, params: params({ modelId: 'm3' }) } })),
    ).toBe('NOT_FOUND');

    const ids = async (name: string) => {
      const q = new Queue(name, { connection: connectionOptions(redis.url), prefix });
      try {
        return (await q.getJobs(['waiting', 'prioritized', 'active', 'delayed'])).map((j) => j.id);
      } finally {
        await q.close();
      }
    };
    expect(await ids('inference@n1')).toEqual([stageJobId(onNode.id, 'generate')]);
    expect(await ids('inference')).toEqual([stageJobId(shared.id, 'generate')]);

    // A consumer of only inference@n1 runs the m1 job, never the m2 one.
    const ran: Ran[] = [];
    await worker(prefix, ran, undefined, ['inference@n1']);
    await until(api, onNode.id, S.SUCCEEDED);
    await sleep(200);
    expect(ran.map((r) => r.jobId)).toEqual([onNode.id]);
    expect(ran[0]!.params['modelId']).toBe('m1');
    expect((await getJob(api, shared.id)).state).toBe(S.QUEUED);
  });
});

describe('retry', () => {
  it('refuses SUCCEEDED and QUEUED jobs and runs a failed one again', async () => {
    const { prefix, api } = await setup();
    const tries = new Map<string, number>();
    const ran: Ran[] = [];
    const failing = await submit(api, { spec: { ...submitReq().spec!, params: params({ seed: 7 }) } });
    await worker(prefix, ran, async (ctx) => {
      const t = (tries.get(ctx.data.jobId) ?? 0) + 1;
      tries.set(ctx.data.jobId, t);
      if (ctx.data.params['seed'] === 7 && t === 1) throw DopsError.invalidArgument('params.prompt', 'bad');
    });
    await until(api, failing.id, S.FAILED);
    expect(await getJob(api, failing.id)).toMatchObject({
      runs: 1,
      error: {
        code: commonV1.ErrorCode.INVALID_ARGUMENT,
        stage: 'generate',
        retryable: false,
        // The stage's structured error survives the queue: its field violations reach GetJob, as request paths.
        fieldViolations: [{ field: 'spec.params.prompt', description: 'bad' }],
      },
    });

    const retried = (await call(api.retryJob, { jobId: failing.id })).job!;
    expect(retried.runs).toBe(2);
    expect([S.QUEUED, S.RUNNING, S.SUCCEEDED]).toContain(retried.state);
    await until(api, failing.id, S.SUCCEEDED);
    const after = await getJob(api, failing.id);
    expect(after).toMatchObject({
      runs: 2,
      error: undefined,
      images: [{ path: join(ARTIFACT_ROOT, `${failing.id}.png`) }],
    });
    expect(tries.get(failing.id)).toBe(2);

    expect(await codeOf(call(api.retryJob, { jobId: failing.id }))).toBe('FAILED_PRECONDITION');
    // QUEUED: a paused session holds it, so it stays queued.
    const { session } = await call(api.createSession, {
      defaults: processingV1.SessionDefaults.fromPartial({}),
    });
    await call(api.pauseSession, { sessionId: session!.id });
    const held = await submit(api, { sessionId: session!.id });
    expect(await codeOf(call(api.retryJob, { jobId: held.id }))).toBe('FAILED_PRECONDITION');
    expect(await getJob(api, held.id)).toMatchObject({ state: S.QUEUED, runs: 1 });
    expect(await codeOf(call(api.retryJob, { jobId: 'nope' }))).toBe('NOT_FOUND');
  });
});

describe('terminal states', () => {
  it('leaves a SUCCEEDED job as it is when cancelled', async () => {
    const { prefix, api } = await setup();
    await worker(prefix, []);
    const job = await submit(api);
    await until(api, job.id, S.SUCCEEDED);
    const before = await getJob(api, job.id);
    const reply = (await call(api.cancelJob, { jobId: job.id })).job!;
    expect(reply).toMatchObject({ state: S.SUCCEEDED, error: undefined, images: before.images });
    await sleep(200);
    expect(await getJob(api, job.id)).toEqual(before);
    expect(await codeOf(call(api.cancelJob, { jobId: 'nope' }))).toBe('NOT_FOUND');
  });

  it('forgets terminal jobs after the retention, and only those', async () => {
    const { prefix, processing, api } = await setup({ retentionMs: 1_500 });
    const { session } = await call(api.createSession, {
      defaults: processingV1.SessionDefaults.fromPartial({}),
    });
    await call(api.pauseSession, { sessionId: session!.id });
    const held = await submit(api, { sessionId: session!.id });
    await worker(prefix, []);
    const job = await submit(api);
    await until(api, job.id, S.SUCCEEDED);
    const cancelled = await submit(api, { sessionId: session!.id });
    expect((await call(api.cancelJob, { jobId: cancelled.id })).job!.state).toBe(S.CANCELLED);
    expect(await client.exists(processing.keys.job(job.id), processing.keys.events(job.id))).toBe(2);
    await waitFor(async () => (await codeOf(getJob(api, job.id))) === 'NOT_FOUND', { timeoutMs: 4_000 });
    await waitFor(async () => (await codeOf(getJob(api, cancelled.id))) === 'NOT_FOUND', {
      timeoutMs: 2_000,
    });
    expect(await client.exists(processing.keys.job(job.id), processing.keys.events(job.id))).toBe(0);
    expect(await codeOf(collect(stream(api.watchJob, { jobId: job.id })))).toBe('NOT_FOUND');
    // The non-terminal job is kept.
    expect(await getJob(api, held.id)).toMatchObject({ state: S.QUEUED, held: true });
    const listed = await call(api.listJobs, {
      state: S.UNSPECIFIED,
      sessionId: '',
      batchId: '',
      pageSize: 0,
      pageToken: '',
    });
    expect(listed.jobs.map((j) => j.id)).toEqual([held.id]);
  });
});

describe('clients over gRPC', () => {
  /** What a caller learns from a failed call, with the id it asked for replaced by `<id>`. */
  async function answer(p: Promise<unknown>, id: string) {
    const e = await p.then(
      () => undefined,
      (err: unknown) => err as DopsError,
    );
    const hide = (text: string) => text.split(id).join('<id>');
    return (
      e && {
        code: e.code,
        message: hide(e.message),
        violations: JSON.parse(hide(JSON.stringify(e.violations))),
      }
    );
  }
  const MISSING = 'f'.repeat(32);
  const list = (over: Partial<processingV1.ListJobsRequest> = {}) => ({
    state: S.UNSPECIFIED,
    sessionId: '',
    batchId: '',
    pageSize: 0,
    pageToken: '',
    ...over,
  });

  it("answers bob for alice's job, batch and session exactly as for ones that do not exist", async () => {
    const { api: alice, as } = await setup();
    const bob = as('bob');
    const { session } = await call(alice.createSession, {
      defaults: processingV1.SessionDefaults.fromPartial({ modelId: 'm' }),
    });
    const sid = session!.id;
    const job = await submit(alice, { sessionId: sid });
    expect(job.clientId).toBe('alice');
    const cancelled = await submit(alice);
    await call(alice.cancelJob, { jobId: cancelled.id });
    const { batch } = await call(alice.submitBatch, {
      ...submitReq(),
      expansion: { cartesian: [{ field: 'seed', values: ['1', '2'] }], zip: [], repeat: 0 },
    });

    const calls: [string, (id: string) => Promise<unknown>][] = [
      [job.id, (id) => call(bob.getJob, { jobId: id })],
      [job.id, (id) => collect(stream(bob.watchJob, { jobId: id }))],
      [job.id, (id) => call(bob.cancelJob, { jobId: id })],
      [cancelled.id, (id) => call(bob.retryJob, { jobId: id })],
      [batch!.id, (id) => call(bob.getBatch, { batchId: id })],
      [batch!.id, (id) => call(bob.cancelBatch, { batchId: id })],
      [batch!.id, (id) => call(bob.listJobs, list({ batchId: id }))],
      [sid, (id) => call(bob.listJobs, list({ sessionId: id }))],
      [sid, (id) => call(bob.getSession, { sessionId: id })],
      [sid, (id) => call(bob.pauseSession, { sessionId: id })],
      [sid, (id) => call(bob.resumeSession, { sessionId: id })],
      [sid, (id) => call(bob.cancelSession, { sessionId: id })],
      [sid, (id) => submit(bob, { sessionId: id })],
    ];
    for (const [id, fn] of calls) {
      const foreign = await answer(fn(id), id);
      expect(foreign?.code).toBe('NOT_FOUND');
      expect(foreign).toEqual(await answer(fn(MISSING), MISSING));
    }
    expect((await call(bob.listJobs, list())).jobs).toEqual([]);
    expect((await call(alice.listJobs, list())).jobs).toHaveLength(4);
    expect(await getJob(alice, job.id)).toMatchObject({ state: S.QUEUED, held: false });
    expect(await getJob(alice, cancelled.id)).toMatchObject({ state: S.CANCELLED, runs: 1 });
    expect((await call(alice.getBatch, { batchId: batch!.id })).batch).toMatchObject({ queued: 2 });
    expect((await call(alice.getSession, { sessionId: sid })).session!.state).toBe(
      processingV1.SessionState.ACTIVE,
    );
  });

  it('takes the client from the credential: the same idempotency key from alice and bob gives two jobs', async () => {
    const { api: alice, as } = await setup();
    const bob = as('bob');
    const a = await call(alice.submitJob, submitReq({ idempotencyKey: 'k' }));
    const b = await call(bob.submitJob, submitReq({ idempotencyKey: 'k' }));
    expect([a.created, b.created]).toEqual([true, true]);
    expect([a.job!.clientId, b.job!.clientId]).toEqual(['alice', 'bob']);
    expect((await call(alice.submitJob, submitReq({ idempotencyKey: 'k' }))).job!.id).toBe(a.job!.id);
  });

  it('answers a quota with RESOURCE_EXHAUSTED and google.rpc.RetryInfo', async () => {
    const { api, server } = await setup({ maxOpenSessions: 1, maxQueuedPerClient: 1, retryAfterMs: 1_234 });
    await call(api.createSession, { defaults: processingV1.SessionDefaults.fromPartial({}) });
    const session = await call(api.createSession, {
      defaults: processingV1.SessionDefaults.fromPartial({}),
    }).catch((e: DopsError) => e);
    expect(session).toMatchObject({ code: 'RESOURCE_EXHAUSTED', retryable: true });
    expect((session as DopsError).retryAfterMs).toBeGreaterThan(0);
    await submit(api);
    const job = await submit(api).catch((e: DopsError) => e);
    expect(job).toMatchObject({ code: 'RESOURCE_EXHAUSTED', retryable: true, retryAfterMs: 1_234 });
    // Without a credential the server refuses before the handler.
    const anonymous = createClient(processingV1.ProcessingServiceClient, server.address, {
      credentials: anonymousCredentials(),
    });
    cleanup.push(async () => anonymous.close());
    expect(await codeOf(call(anonymous.listJobs, list()))).toBe('UNAUTHENTICATED');
  });
});
