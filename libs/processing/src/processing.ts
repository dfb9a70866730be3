import { randomUUID } from 'node:crypto';
import { FlowProducer, Job, Queue, QueueEvents, type FlowJob } from 'bullmq';
import { DopsError } from '@dops/errors';
import { inferenceV1, processingV1 } from '@dops/proto';
import {
  STAGE_QUEUE,
  clearCancel,
  connectionOptions,
  createRedis,
  decodeStageError,
  isCancelled,
  isStageProgress,
  listNodes,
  nodeQueueName,
  parseStageJobId,
  publishCancel,
  stageBackoff,
  stageJobId,
  type Redis,
  type StageJobData,
  type StageResult,
} from '@dops/queue';
import { expandBatch } from './batch-expansion';
import { ClientQuotas, type ClientQuotaOptions } from './client-quotas';
import { IdempotencyKeys } from './idempotency';
import { TERMINAL, fromProtoState, toProtoJob, type JobEvent, type JobRecord } from './job-record';
import { JobStore } from './job-store';
import { Keys } from './keys';
import { notFound, ownedBy } from './ownership';
import { SessionStore, type SessionRecord, type SessionStoreOptions } from './session-store';
import { checkSpec, planStages, templateOf, type WorkflowLimits } from './workflow';

export interface ProcessingOptions extends WorkflowLimits, ClientQuotaOptions, SessionStoreOptions {
  redisUrl: string;
  prefix: string;
  /** Terminal jobs are kept this long. */
  retentionMs: number;
  /** An idempotency key returns the first job this long. */
  idempotencyTtlMs: number;
  /** Queued first stages on the shared inference queue before SubmitJob answers RESOURCE_EXHAUSTED. */
  maxQueued: number;
  /** Retry hint of RESOURCE_EXHAUSTED (the shared queue, a client's queued-job quota). */
  retryAfterMs: number;
  maxBatchItems: number;
  defaultDeadlineMs: number;
  /** BullMQ attempts of a stage (retryable codes only). */
  attempts: number;
  backoffMs: number;
  /**
   * Whether the model registry knows `modelId` (the model service): a known model that no node
   * holds yet is loaded by the inference node that picks the job. Unset: only models some
   * inference node announces are accepted.
   */
  modelExists?: (modelId: string) => Promise<boolean>;
}

const PRIORITY_BASE: Record<processingV1.Priority, number> = {
  [processingV1.Priority.HIGH]: 1,
  [processingV1.Priority.NORMAL]: 10_000,
  [processingV1.Priority.UNSPECIFIED]: 10_000,
  [processingV1.Priority.LOW]: 100_000,
  [processingV1.Priority.UNRECOGNIZED]: 10_000,
};
const MAX_BULL_PRIORITY = 2_097_151;

/**
 * BullMQ priority of a client's next job: its class base plus the jobs that client already has
 * queued, so one client's 1,000 queued jobs sit behind another client's first one.
 */
export function fairPriority(priority: processingV1.Priority, queuedOfClient: number): number {
  return Math.min(MAX_BULL_PRIORITY, (PRIORITY_BASE[priority] ?? 10_000) + queuedOfClient);
}

/**
 * The processing domain: jobs, batches and sessions in Redis, workflows as BullMQ flows, and
 * the stage queues' events folded back into job state. Every method acts for `clientId`, the
 * caller its credential proved: it sees only what that client made (another client's job,
 * batch or session is NOT_FOUND, as a missing one). `start()` rejects when Redis cannot be reached.
 */
export class Processing {
  readonly keys: Keys;
  readonly store: JobStore;
  readonly quotas: ClientQuotas;
  private readonly sessions: SessionStore;
  private readonly idempotency: IdempotencyKeys;
  private readonly redis: Redis;
  private readonly flows: FlowProducer;
  private readonly queues = new Map<string, Queue>();
  private readonly events = new Map<string, QueueEvents>();

  constructor(private readonly options: ProcessingOptions) {
    this.keys = new Keys(options.prefix);
    this.redis = createRedis(options.redisUrl);
    this.store = new JobStore(this.redis, this.keys, options);
    this.quotas = new ClientQuotas(this.redis, this.keys, options);
    this.sessions = new SessionStore(this.redis, this.keys, options);
    this.idempotency = new IdempotencyKeys(this.redis, this.keys, options.idempotencyTtlMs);
    this.flows = new FlowProducer({
      connection: connectionOptions(options.redisUrl),
      prefix: options.prefix,
    });
  }

  async start(): Promise<void> {
    await this.redis.ping();
    for (const name of ['inference', 'postprocessing']) await this.listen(name);
    for (const node of await listNodes(this.redis, this.options.prefix))
      if (node.service === 'inference') await this.listen(nodeQueueName('inference', node.nodeId));
  }

  async close(): Promise<void> {
    await Promise.all([...this.events.values()].map((e) => e.close()));
    await Promise.all([...this.queues.values()].map((q) => q.close()));
    await this.flows.close();
    this.redis.disconnect();
  }

  // ---- jobs -------------------------------------------------------------------------------

  /** Queues a job of `clientId`; RESOURCE_EXHAUSTED past its submit rate or queued-job quota. */
  async submitJob(
    clientId: string,
    req: processingV1.SubmitJobRequest,
    traceparent?: string,
  ): Promise<{ job: JobRecord; created: boolean }> {
    await this.quotas.consumeSubmit(clientId);
    IdempotencyKeys.check(req.idempotencyKey);
    const session = req.sessionId ? await this.sessions.requireOpen(clientId, req.sessionId) : undefined;
    const spec = withDefaults(req.spec, session);
    const template = templateOf(spec);
    const params = checkSpec(spec!, template, this.options);
    await this.checkModel(params.modelId);
    const claim = await this.idempotency.claim(clientId, req.idempotencyKey, newId());
    if (!claim.owner) return { job: await this.waitForRecord(clientId, claim.id), created: false };
    const id = claim.id;
    await this.admit(clientId, [id], req.idempotencyKey);
    const record = await this.newRecord(id, spec!, params, { clientId, template, req, session, traceparent });
    await this.store.create(record);
    if (!record.held) await this.enqueue(record);
    return { job: (await this.store.get(id)) ?? record, created: true };
  }

  async getJob(clientId: string, id: string): Promise<JobRecord> {
    return this.store.require(clientId, id);
  }

  /** The client's jobs (of its session or batch when given: NOT_FOUND when not its own). */
  async listJobs(
    clientId: string,
    req: processingV1.ListJobsRequest,
  ): Promise<{ jobs: JobRecord[]; nextPageToken: string }> {
    const size = req.pageSize === 0 ? 50 : req.pageSize;
    if (size > 500) throw DopsError.invalidArgument('page_size', 'must be at most 500');
    let offset = 0;
    if (req.pageToken) {
      offset = Number(Buffer.from(req.pageToken, 'base64url').toString());
      if (!Number.isInteger(offset) || offset < 0)
        throw DopsError.invalidArgument('page_token', 'is not a token this service issued');
    }
    if (req.sessionId) await this.sessions.require(clientId, req.sessionId);
    if (req.batchId) await this.requireBatch(clientId, req.batchId);
    const index = req.batchId
      ? this.keys.batchJobs(req.batchId)
      : req.sessionId
        ? this.keys.sessionJobs(req.sessionId)
        : this.keys.clientJobs(clientId);
    const state = fromProtoState(req.state);
    const jobs: JobRecord[] = [];
    let next: number | undefined = offset;
    // Filters apply after paging the index; keep reading until the page is full or the index ends.
    while (next !== undefined && jobs.length < size) {
      const page: { records: JobRecord[]; next?: number } = await this.store.page(index, next, size);
      for (const r of page.records) {
        if (jobs.length >= size) break;
        if (r.clientId !== clientId || (state && r.state !== state)) continue;
        if (!req.sessionId || r.sessionId === req.sessionId) jobs.push(r);
      }
      next = page.next;
    }
    const token = next !== undefined ? Buffer.from(String(next)).toString('base64url') : '';
    return { jobs, nextPageToken: token };
  }

  /** Cancels a job of the client; a terminal one is returned unchanged. */
  async cancelJob(clientId: string, id: string): Promise<JobRecord> {
    return this.cancelRecord(await this.store.require(clientId, id));
  }

  private async cancelRecord(record: JobRecord): Promise<JobRecord> {
    const id = record.id;
    if (TERMINAL.has(record.state)) return record;
    await publishCancel(this.redis, this.options.prefix, id);
    const removed = record.held || (await this.removeFlow(record, { keepFinished: true }));
    if (removed) {
      // Removed means no stage of it runs or will run. A RUNNING record can be removed too: its
      // stage failed retryably and waits (delayed) for its next attempt, or stalled back to wait.
      await this.store.update(id, (r) =>
        r.state === 'QUEUED' || r.state === 'RUNNING'
          ? {
              ...r,
              state: 'CANCELLED',
              counted: false,
              held: false,
              error: {
                code: 'CANCELLED',
                message: `job '${id}' was cancelled`,
                retryable: false,
                stage: r.stage,
              },
            }
          : undefined,
      );
    }
    // A running stage aborts on the published cancel; its failure makes the job CANCELLED.
    return (await this.store.get(id)) ?? record;
  }

  /** Queues a FAILED or CANCELLED job of the client again; FAILED_PRECONDITION otherwise. Counts as a submit. */
  async retryJob(clientId: string, id: string): Promise<JobRecord> {
    const record = await this.store.require(clientId, id);
    await this.quotas.consumeSubmit(clientId);
    if (record.state !== 'FAILED' && record.state !== 'CANCELLED')
      throw new DopsError(
        'FAILED_PRECONDITION',
        `job_id: job '${id}' is ${record.state}; only FAILED or CANCELLED jobs can be retried`,
        {
          violations: [{ field: 'job_id', description: `job is ${record.state}` }],
        },
      );
    await this.admit(clientId, [id]);
    await this.removeFlow(record);
    await clearCancel(this.redis, this.options.prefix, id);
    const queued = await this.store.queuedOf(record.clientId);
    const updated = await this.store.update(
      id,
      (r) => ({
        ...r,
        state: 'QUEUED',
        stage: '',
        error: undefined,
        images: [],
        runs: r.runs + 1,
        counted: true,
        deadlineAt: Date.now() + r.budgetMs,
      }),
      { fromTerminal: true },
    );
    if (updated) await this.enqueue(updated, queued);
    else await this.quotas.releaseQueued(clientId, [id]);
    return (await this.store.get(id)) ?? record;
  }

  /** The client's job now, then its events until terminal; ends when `signal` aborts. */
  async *watchJob(
    clientId: string,
    id: string,
    signal: AbortSignal,
  ): AsyncGenerator<processingV1.WatchJobResponse> {
    const snapshot = id ? await this.store.snapshot(id) : { lastEventId: '0-0' };
    const record = ownedBy(snapshot.record, clientId);
    if (!record) throw notFound('job', id);
    const lastEventId = snapshot.lastEventId;
    yield { job: toProtoJob(record) };
    if (TERMINAL.has(record.state)) return;
    if (record.state === 'QUEUED' && !record.held) yield { queued: { ahead: await this.ahead(record) } };
    const reader = createRedis(this.options.redisUrl);
    const stop = () => reader.disconnect();
    signal.addEventListener('abort', stop, { once: true });
    try {
      let from = lastEventId;
      while (!signal.aborted) {
        const res = (await reader
          .xread('BLOCK', 1_000, 'STREAMS', this.keys.events(id), from)
          .catch(() => null)) as [string, [string, string[]][]][] | null;
        for (const [entryId, fields] of res?.[0]?.[1] ?? []) {
          from = entryId;
          const event = JSON.parse(fields[1] ?? '{}') as JobEvent;
          if (event.kind === 'stage') yield { stage: { stage: event.stage, status: event.status } };
          else if (event.kind === 'progress')
            yield {
              progress: { stage: event.stage, step: event.step, total: event.total, preview: event.preview },
            };
          else {
            const now = await this.store.get(id);
            if (!now) return;
            yield { job: toProtoJob(now) };
            if (TERMINAL.has(now.state)) return;
          }
        }
      }
    } finally {
      signal.removeEventListener('abort', stop);
      reader.disconnect();
    }
  }

  // ---- batches ----------------------------------------------------------------------------

  /** Queues a batch of `clientId`; its jobs count one by one against the queued-job quota. */
  async submitBatch(
    clientId: string,
    req: processingV1.SubmitBatchRequest,
    traceparent?: string,
  ): Promise<{ batch: processingV1.Batch; created: boolean }> {
    await this.quotas.consumeSubmit(clientId);
    IdempotencyKeys.check(req.idempotencyKey);
    const session = req.sessionId ? await this.sessions.requireOpen(clientId, req.sessionId) : undefined;
    const base = withDefaults(req.spec, session);
    const template = templateOf(base);
    const items = expandBatch(req.expansion, this.options.maxBatchItems, base?.params?.seed);
    // Validate every item before queueing any.
    const specs = items.map((overrides) => {
      const spec = { ...base!, params: { ...base!.params!, ...overrides } as inferenceV1.GenerationParams };
      return { id: newId(), spec, params: checkSpec(spec, template, this.options) };
    });
    for (const modelId of new Set(specs.map((s) => s.params.modelId))) await this.checkModel(modelId);
    const key = req.idempotencyKey && `batch:${req.idempotencyKey}`;
    const claim = await this.idempotency.claim(clientId, key, newId());
    if (!claim.owner) return { batch: await this.getBatch(clientId, claim.id), created: false };
    const batchId = claim.id;
    const jobIds = specs.map((s) => s.id);
    await this.admit(clientId, jobIds, key);
    await this.redis.set(this.keys.batch(batchId), JSON.stringify({ id: batchId, clientId }));
    const context = { clientId, template, req, session, traceparent, batchId };
    for (const { id, spec, params } of specs) {
      const record = await this.newRecord(id, spec, params, context);
      await this.store.create(record);
      if (!record.held) await this.enqueue(record);
    }
    return { batch: await this.getBatch(clientId, batchId), created: true };
  }

  async getBatch(clientId: string, batchId: string): Promise<processingV1.Batch> {
    await this.requireBatch(clientId, batchId);
    const jobs = await this.store.all(this.keys.batchJobs(batchId));
    const count = (s: string) => jobs.filter((j) => j.state === s).length;
    const c = {
      queued: count('QUEUED'),
      running: count('RUNNING'),
      succeeded: count('SUCCEEDED'),
      failed: count('FAILED'),
      cancelled: count('CANCELLED'),
    };
    const state = c.running
      ? 'RUNNING'
      : c.queued
        ? 'QUEUED'
        : c.failed
          ? 'FAILED'
          : c.cancelled
            ? 'CANCELLED'
            : 'SUCCEEDED';
    return { id: batchId, jobIds: jobs.map((j) => j.id), state: processingV1.JobState[state], ...c };
  }

  async cancelBatch(clientId: string, batchId: string): Promise<processingV1.Batch> {
    await this.requireBatch(clientId, batchId);
    await this.cancelAll(await this.store.all(this.keys.batchJobs(batchId)));
    return this.getBatch(clientId, batchId);
  }

  /** NOT_FOUND naming batch_id unless the client owns the batch. */
  private async requireBatch(clientId: string, batchId: string): Promise<void> {
    const raw = batchId ? await this.redis.get(this.keys.batch(batchId)) : null;
    if (!ownedBy(raw ? (JSON.parse(raw) as { clientId: string }) : undefined, clientId))
      throw notFound('batch', batchId);
  }

  /**
   * Cancels `jobs`, the queued ones before the running ones: cancelling a running job first
   * frees its worker, which could then pick up a queued job of the same group before its cancel.
   */
  private async cancelAll(jobs: JobRecord[]): Promise<void> {
    const open = jobs.filter((j) => !TERMINAL.has(j.state));
    for (const job of [
      ...open.filter((j) => j.state !== 'RUNNING'),
      ...open.filter((j) => j.state === 'RUNNING'),
    ])
      await this.cancelRecord(job);
  }

  // ---- sessions ---------------------------------------------------------------------------

  /** A new session of the client; RESOURCE_EXHAUSTED at its open-session quota. */
  async createSession(clientId: string, req: processingV1.CreateSessionRequest): Promise<SessionRecord> {
    return this.sessions.create(clientId, newId(), req.defaults ?? { modelId: '', loras: [] });
  }

  /** The client's session (its expiry starts again); NOT_FOUND when missing, expired or another client's. */
  async requireSession(clientId: string, id: string): Promise<SessionRecord> {
    return this.sessions.require(clientId, id);
  }

  async pauseSession(clientId: string, id: string): Promise<SessionRecord> {
    const session = await this.sessions.setState(clientId, id, 'PAUSED');
    for (const job of await this.jobsOf(session)) {
      if (job.state !== 'QUEUED' || job.held) continue;
      if (await this.removeFlow(job))
        await this.store.update(job.id, (r) => (r.state === 'QUEUED' ? { ...r, held: true } : undefined));
    }
    return session;
  }

  async resumeSession(clientId: string, id: string): Promise<SessionRecord> {
    const session = await this.sessions.setState(clientId, id, 'ACTIVE');
    for (const job of await this.jobsOf(session)) {
      if (job.state !== 'QUEUED' || !job.held) continue;
      const updated = await this.store.update(job.id, (r) => ({ ...r, held: false }));
      if (updated) await this.enqueue(updated);
    }
    return session;
  }

  async cancelSession(clientId: string, id: string): Promise<SessionRecord> {
    const session = await this.sessions.setState(clientId, id, 'CANCELLED');
    await this.cancelAll(await this.jobsOf(session));
    return session;
  }

  /** The session's jobs; only its own client's, whatever the index holds. */
  private async jobsOf(session: SessionRecord): Promise<JobRecord[]> {
    const jobs = await this.store.all(this.keys.sessionJobs(session.id));
    return jobs.filter((j) => j.clientId === session.clientId);
  }

  // ---- internals --------------------------------------------------------------------------

  private async waitForRecord(clientId: string, id: string): Promise<JobRecord> {
    for (let i = 0; i < 100; i++) {
      const r = ownedBy(await this.store.get(id), clientId);
      if (r) return r;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw DopsError.unavailable(`job '${id}' of this idempotency key is still being created; try again`);
  }

  private async newRecord(
    id: string,
    spec: processingV1.JobSpec,
    params: inferenceV1.GenerationParams,
    context: {
      clientId: string;
      template: string;
      req: Pick<processingV1.SubmitJobRequest, 'priority' | 'deadlineSeconds'>;
      session: SessionRecord | undefined;
      traceparent: string | undefined;
      batchId?: string;
    },
  ): Promise<JobRecord> {
    const { clientId, template, req, session, traceparent, batchId } = context;
    const now = Date.now();
    const budgetMs = req.deadlineSeconds ? req.deadlineSeconds * 1000 : this.options.defaultDeadlineMs;
    return {
      id,
      state: 'QUEUED',
      template,
      clientId,
      sessionId: session?.id,
      batchId,
      priority: req.priority,
      stage: '',
      plan: await planStages(id, spec, params, this.options),
      createdAt: now,
      updatedAt: now,
      deadlineAt: now + budgetMs,
      budgetMs,
      images: [],
      runs: 1,
      held: session?.state === 'PAUSED',
      counted: true,
      traceparent,
    };
  }

  /** Adds the job's flow: the last stage is the root, each earlier stage its child. */
  private async enqueue(record: JobRecord, queuedBefore?: number): Promise<void> {
    const queued = queuedBefore ?? Math.max(0, (await this.store.queuedOf(record.clientId)) - 1);
    const priority = fairPriority(record.priority, queued);
    const modelId = String(record.plan[0]?.params['modelId'] ?? '');
    const firstQueue = await this.routeGenerate(modelId);
    let flow: FlowJob | undefined;
    for (const step of record.plan) {
      const data: StageJobData = {
        jobId: record.id,
        stage: step.stage,
        params: step.params,
        deadlineAt: record.deadlineAt,
        traceparent: record.traceparent,
        clientId: record.clientId,
        sessionId: record.sessionId,
        batchId: record.batchId,
      };
      const queueName = step.stage === 'generate' ? firstQueue : STAGE_QUEUE[step.stage];
      await this.listen(queueName);
      flow = {
        name: step.stage,
        queueName,
        data,
        opts: {
          jobId: stageJobId(record.id, step.stage),
          priority,
          attempts: this.options.attempts,
          backoff: stageBackoff(this.options.backoffMs),
          failParentOnFailure: true,
          removeOnComplete: { age: Math.ceil(this.options.retentionMs / 1000) },
          removeOnFail: { age: Math.ceil(this.options.retentionMs / 1000) },
        },
        children: flow ? [flow] : undefined,
      };
    }
    await this.store.update(record.id, (r) => ({ ...r, firstQueue }));
    await this.flows.add(flow!, { queuesOptions: {} });
  }

  /** `inference@<node>` when a node holds the model on a ready device with no active job, else `inference`. */
  private async routeGenerate(modelId: string): Promise<string> {
    const nodes = await listNodes(this.redis, this.options.prefix);
    const free = nodes.find(
      (n) =>
        n.service === 'inference' &&
        n.devices.some(
          (d) => d.state === 'ready' && d.activeJobs === 0 && d.residentModels.includes(modelId),
        ),
    );
    return free ? nodeQueueName('inference', free.nodeId) : 'inference';
  }

  /** NOT_FOUND naming `spec.params.model_id` when no announced inference node holds the model. */
  private async checkModel(modelId: string): Promise<void> {
    const nodes = await listNodes(this.redis, this.options.prefix);
    const resident = nodes.some(
      (n) => n.service === 'inference' && n.devices.some((d) => d.residentModels.includes(modelId)),
    );
    if (!resident && !(await this.options.modelExists?.(modelId)))
      throw new DopsError(
        'NOT_FOUND',
        `spec.params.model_id: model '${modelId}' is not loaded on any inference node`,
        {
          violations: [
            {
              field: 'spec.params.model_id',
              description: `model '${modelId}' is not loaded on any inference node`,
            },
          ],
        },
      );
  }

  /**
   * Room for `jobIds` of the client: the shared queue's bound, then the client's queued-job quota
   * (reserving them). On RESOURCE_EXHAUSTED the idempotency key `key` is given up: nothing was queued.
   */
  private async admit(clientId: string, jobIds: string[], key = ''): Promise<void> {
    try {
      await this.checkCapacity(jobIds.length);
      await this.quotas.reserveQueued(clientId, jobIds);
    } catch (err) {
      await this.idempotency.release(clientId, key);
      throw err;
    }
  }

  /** RESOURCE_EXHAUSTED with a retry hint when `adding` more first stages would pass the bound. */
  private async checkCapacity(adding: number): Promise<void> {
    const counts = await this.queue('inference').getJobCounts('wait', 'prioritized', 'delayed');
    const queued = Object.values(counts).reduce((a, b) => a + b, 0);
    if (queued + adding > this.options.maxQueued)
      throw new DopsError(
        'RESOURCE_EXHAUSTED',
        `the inference queue is full (${queued} of ${this.options.maxQueued} queued); retry later`,
        {
          retryable: true,
          retryAfterMs: this.options.retryAfterMs,
        },
      );
  }

  /**
   * Removes the job's flow (root and children); false when a stage is running (locked), or with
   * `keepFinished` when the flow already completed or failed.
   */
  private async removeFlow(record: JobRecord, options: { keepFinished?: boolean } = {}): Promise<boolean> {
    const last = record.plan[record.plan.length - 1]!;
    const root = await Job.fromId(
      this.queue(
        STAGE_QUEUE[last.stage] === 'inference'
          ? (record.firstQueue ?? 'inference')
          : STAGE_QUEUE[last.stage],
      ),
      stageJobId(record.id, last.stage),
    );
    if (!root) return true;
    // A cancel leaves a finished flow alone: its completion (or failure) event settles the record.
    if (options.keepFinished) {
      const state = await root.getState();
      if (state === 'completed' || state === 'failed') return false;
    }
    try {
      await root.remove();
      return true;
    } catch {
      return false;
    }
  }

  private async ahead(record: JobRecord): Promise<number> {
    const queue = record.firstQueue ?? 'inference';
    const id = stageJobId(record.id, 'generate');
    const base = `${this.options.prefix}:${queue}`;
    // BullMQ internals: un-prioritized jobs (wait) run first, then the prioritized sorted set in order.
    const [waiting, rank] = await Promise.all([
      this.redis.llen(`${base}:wait`),
      this.redis.zrank(`${base}:prioritized`, id),
    ]);
    return rank === null ? waiting : waiting + rank;
  }

  /**
   * The error a failed stage job stands for. A parent that failed because a child did
   * (BullMQ: "child <key> failed") takes the child's own error, whichever event arrives first;
   * a job whose cancel was requested ends CANCELLED whatever its stage failed with.
   */
  private async stageError(
    jobId: string,
    stage: string,
    failedReason: string | undefined,
  ): Promise<{ error: DopsError; stage: string }> {
    if (await isCancelled(this.redis, this.options.prefix, jobId)) {
      return { error: new DopsError('CANCELLED', `job ${jobId} was cancelled`, { retryable: false }), stage };
    }
    const child = /^child (\S+) failed$/.exec(failedReason ?? '');
    if (child) {
      // The key is `<prefix>:<queue>:<stage job id>`.
      const [queueName, childId] = child[1]!.slice(this.options.prefix.length + 1).split(/:(.*)/s);
      const childJob = queueName && childId ? await Job.fromId(this.queue(queueName), childId) : undefined;
      const childStage = parseStageJobId(childId)?.stage;
      if (childJob?.failedReason)
        return { error: decodeStageError(childJob.failedReason), stage: childStage ?? stage };
    }
    return { error: decodeStageError(failedReason), stage };
  }

  private queue(name: string): Queue {
    let q = this.queues.get(name);
    if (!q) {
      q = new Queue(name, {
        connection: connectionOptions(this.options.redisUrl),
        prefix: this.options.prefix,
      });
      this.queues.set(name, q);
    }
    return q;
  }

  /** Folds a stage queue's events into job state, resuming after the last event this service saw. */
  private async listen(queueName: string): Promise<void> {
    if (this.events.has(queueName)) return;
    const lastEventId = (await this.redis.get(this.keys.lastEvent(queueName))) ?? undefined;
    const events = new QueueEvents(queueName, {
      connection: connectionOptions(this.options.redisUrl),
      prefix: this.options.prefix,
      lastEventId,
    });
    this.events.set(queueName, events);
    const once = async (id: string, apply: () => Promise<unknown>) => {
      // Every replica of this service reads the same events; the first one applies each.
      if ((await this.redis.set(this.keys.seenEvent(queueName, id), '1', 'EX', 3600, 'NX')) !== 'OK') return;
      await apply();
      await this.redis.set(this.keys.lastEvent(queueName), id);
    };
    const guard = (p: Promise<unknown>) => p.catch(() => undefined);
    events.on('active', ({ jobId }, id) => {
      const s = parseStageJobId(jobId);
      if (!s) return;
      void guard(
        once(id, () =>
          this.store.update(
            s.jobId,
            (r) => ({ ...r, state: 'RUNNING', stage: s.stage, counted: false, held: false }),
            {
              event: { kind: 'stage', stage: s.stage, status: 'started' },
            },
          ),
        ),
      );
    });
    events.on('progress', ({ jobId, data }, id) => {
      const s = parseStageJobId(jobId);
      if (!s || !isStageProgress(data)) return;
      void guard(
        once(id, () =>
          this.store.appendEvent(s.jobId, {
            kind: 'progress',
            stage: s.stage,
            step: data.step,
            total: data.total,
            preview: data.preview,
          }),
        ),
      );
    });
    events.on('completed', ({ jobId, returnvalue }, id) => {
      const s = parseStageJobId(jobId);
      if (!s) return;
      void guard(
        once(id, async () => {
          const record = await this.store.get(s.jobId);
          if (!record) return;
          const last = record.plan[record.plan.length - 1]?.stage === s.stage;
          const result = (
            typeof returnvalue === 'string' ? JSON.parse(returnvalue) : returnvalue
          ) as StageResult;
          await this.store.update(
            s.jobId,
            (r) => (last ? { ...r, state: 'SUCCEEDED', images: result?.images ?? [], counted: false } : r),
            { event: { kind: 'stage', stage: s.stage, status: 'completed' } },
          );
        }),
      );
    });
    events.on('failed', ({ jobId, failedReason }, id) => {
      const s = parseStageJobId(jobId);
      if (!s) return;
      void guard(
        once(id, async () => {
          const { error, stage } = await this.stageError(s.jobId, s.stage, failedReason);
          return this.store.update(s.jobId, (r) => ({
            ...r,
            state: error.code === 'CANCELLED' ? 'CANCELLED' : 'FAILED',
            counted: false,
            error: { code: error.code, message: error.message, retryable: error.retryable, stage },
          }));
        }),
      );
    });
    await events.waitUntilReady();
  }
}

function newId(): string {
  return randomUUID().replace(/-/g, '');
}

/** The spec with the session's defaults under the fields it leaves empty. */
function withDefaults(
  spec: processingV1.JobSpec | undefined,
  session: { defaults: processingV1.SessionDefaults } | undefined,
): processingV1.JobSpec | undefined {
  if (!spec || !session) return spec;
  const d = session.defaults;
  const params = spec.params ?? inferenceV1.GenerationParams.fromPartial({});
  return {
    ...spec,
    params: {
      ...params,
      modelId: params.modelId || d.modelId,
      width: params.width ?? d.width,
      height: params.height ?? d.height,
      loras: params.loras.length ? params.loras : d.loras,
    },
  };
}
