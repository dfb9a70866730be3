import { Job } from 'bullmq';
import { DopsError } from '@dops/errors';
import type { processingV1 } from '@dops/proto';
import {
  ErrorThrottle,
  clearCancel,
  createRedis,
  listNodes,
  nodeQueueName,
  Transactions,
  type Redis,
  type WarnLogger,
} from '@dops/queue';
import type { ArtifactStore } from '@dops/artifact-store';
import { downloadArtifact } from './artifact-download';
import { ArtifactRetention, type ArtifactRetentionOptions } from './artifact-retention';
import { Batches } from './batches';
import { ClientQuotas, type ClientQuotaOptions } from './client-quotas';
import { Flows } from './flows';
import { IdempotencyKeys } from './idempotency';
import { JobArtifacts } from './job-artifacts';
import { JobLifecycle, newId, withDefaults } from './job-lifecycle';
import {
  TERMINAL,
  fromProtoState,
  toProtoArtifact,
  toProtoJob,
  type JobEvent,
  type JobRecord,
} from './job-record';
import { JobStore } from './job-store';
import { Keys } from './keys';
import type { ModelCatalog } from './model-catalog';
import { notFound, ownedBy } from './ownership';
import { SessionControl } from './session-control';
import { SessionStore, type SessionRecord, type SessionStoreOptions } from './session-store';
import { SpecChecks } from './spec-checks';
import { StageEvents } from './stage-events';
import { templateOf, type WorkflowLimits } from './workflow';

export { fairPriority } from './job-lifecycle';

export interface ProcessingOptions extends WorkflowLimits, ClientQuotaOptions, SessionStoreOptions {
  redisUrl: string;
  prefix: string;
  /** Terminal jobs are kept this long. */
  retentionMs: number;
  /** An idempotency key returns the first job this long. */
  idempotencyTtlMs: number;
  /** Queued first stages over every inference queue (shared and per node) before RESOURCE_EXHAUSTED. */
  maxQueued: number;
  /** Retry hint of RESOURCE_EXHAUSTED (the queue bound, a client's queued-job quota). */
  retryAfterMs: number;
  maxBatchItems: number;
  defaultDeadlineMs: number;
  /** The longest deadline_seconds a job may ask for; default 7 days. */
  maxDeadlineSeconds?: number;
  /** BullMQ attempts of a stage (retryable codes only). */
  attempts: number;
  backoffMs: number;
  /**
   * The model registry (the model service): the models a job names are checked in it at submit,
   * and a known model no node holds yet is loaded by the inference node that picks the job.
   * Unset: only models some inference node announces are accepted.
   */
  catalog?: ModelCatalog;
  /** Where Redis connection errors go: one JSON line each, the same error at most every 30 s. */
  logger?: WarnLogger;
  /** Where finished jobs' images go and how long they stay. */
  artifacts: ProcessingArtifactOptions;
}

export interface ProcessingArtifactOptions {
  /** Closed by Processing.close(). */
  store: ArtifactStore;
  /** The stage workers' artifact root (DOPS_ARTIFACT_ROOT): the directory store's root too. */
  root: string;
  /** How long an artifact stays downloadable; older ones are swept. */
  ttlMs: number;
  /** How often expired artifacts are swept; unset = never (tests call sweepArtifacts). */
  sweepIntervalMs?: number;
  logger?: ArtifactRetentionOptions['logger'];
}

const DEFAULT_MAX_DEADLINE_S = 7 * 24 * 3600;

/**
 * The processing domain's jobs API: jobs, batches and sessions in Redis, workflows as BullMQ
 * flows (Flows), the stage queues' events folded back into job state (StageEvents). Every method
 * acts for `clientId`, the caller its credential proved: it sees only what that client made
 * (another client's job, batch or session is NOT_FOUND, as a missing one). Every submit is
 * checked whole (SpecChecks) before anything is queued or written. `start()` rejects when Redis
 * cannot be reached.
 */
export class Processing {
  readonly keys: Keys;
  readonly store: JobStore;
  readonly quotas: ClientQuotas;
  private readonly redis: Redis;
  private readonly transactions: Transactions;
  private readonly sessions: SessionStore;
  private readonly idempotency: IdempotencyKeys;
  private readonly flows: Flows;
  private readonly events: StageEvents;
  private readonly checks: SpecChecks;
  private readonly lifecycle: JobLifecycle;
  private readonly batches: Batches;
  private readonly sessionControl: SessionControl;
  private readonly artifacts: JobArtifacts;
  private readonly retention: ArtifactRetention;

  constructor(private readonly options: ProcessingOptions) {
    this.keys = new Keys(options.prefix);
    const errors = new ErrorThrottle(options.logger, 'redis connection error');
    this.redis = createRedis(options.redisUrl, { onError: (err) => errors.report(err) });
    // One connection for every WATCH/MULTI of this instance (jobs and sessions), never shared.
    this.transactions = new Transactions(this.redis, (err) => errors.report(err));
    this.store = new JobStore(this.redis, this.keys, options, this.transactions);
    this.quotas = new ClientQuotas(this.redis, this.keys, options);
    this.sessions = new SessionStore(this.redis, this.keys, options, this.transactions);
    this.idempotency = new IdempotencyKeys(this.redis, this.keys, options.idempotencyTtlMs);
    this.artifacts = new JobArtifacts(this.redis, this.keys, options.artifacts.store, options.artifacts);
    this.retention = new ArtifactRetention(options.artifacts.store, {
      ...options.artifacts,
      intervalMs: options.artifacts.sweepIntervalMs ?? 0,
    });
    this.events = new StageEvents(
      this.redis,
      this.keys,
      this.store,
      options,
      async (queue, id) => Job.fromId(this.flows.queue(queue), id),
      this.artifacts,
    );
    this.flows = new Flows(this.redis, options, (queue) => this.events.listen(queue));
    this.checks = new SpecChecks(this.redis, {
      ...options,
      maxDeadlineSeconds: options.maxDeadlineSeconds ?? DEFAULT_MAX_DEADLINE_S,
    });
    this.lifecycle = new JobLifecycle(
      this.redis,
      this.store,
      this.flows,
      this.quotas,
      this.idempotency,
      options,
      this.artifacts,
    );
    this.batches = new Batches(
      this.redis,
      this.keys,
      this.store,
      this.quotas,
      this.sessions,
      this.idempotency,
      this.checks,
      this.lifecycle,
      options.maxBatchItems,
    );
    this.sessionControl = new SessionControl(
      this.keys,
      this.store,
      this.sessions,
      this.flows,
      this.lifecycle,
    );
  }

  async start(): Promise<void> {
    await this.redis.ping();
    for (const name of ['inference', 'postprocessing']) await this.events.listen(name);
    for (const node of await listNodes(this.redis, this.options.prefix))
      if (node.service === 'inference') await this.events.listen(nodeQueueName('inference', node.nodeId));
    if (this.options.artifacts.sweepIntervalMs) this.retention.start();
  }

  async close(): Promise<void> {
    await this.retention.stop();
    await this.events.close();
    await this.flows.close();
    await this.transactions.close();
    this.redis.disconnect();
    this.options.artifacts.store.close();
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
    this.checks.checkDeadline(req.deadlineSeconds);
    const session = req.sessionId ? await this.sessions.requireOpen(clientId, req.sessionId) : undefined;
    const spec = withDefaults(req.spec, session);
    const checked = this.checks.checkStatic(spec ?? ({} as processingV1.JobSpec), templateOf(spec));
    await this.checks.checkModels(checked);
    const claim = await this.idempotency.claim(clientId, req.idempotencyKey, newId());
    if (!claim.owner) return { job: await this.waitForRecord(clientId, claim.id), created: false };
    const id = claim.id;
    await this.lifecycle.admit(clientId, [id], req.idempotencyKey);
    await this.lifecycle.create(
      await this.lifecycle.newRecord(id, checked, { clientId, req, session, traceparent }),
    );
    return { job: (await this.store.get(id)) ?? (await this.store.require(clientId, id)), created: true };
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
    if (req.batchId) await this.batches.require(clientId, req.batchId);
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
    return this.lifecycle.cancel(await this.store.require(clientId, id));
  }

  /** Queues a FAILED or CANCELLED job of the client again; FAILED_PRECONDITION otherwise. Counts as a submit. */
  async retryJob(clientId: string, id: string): Promise<JobRecord> {
    const record = await this.store.require(clientId, id);
    await this.quotas.consumeSubmit(clientId);
    if (record.state !== 'FAILED' && record.state !== 'CANCELLED')
      throw new DopsError(
        'FAILED_PRECONDITION',
        `job_id: job '${id}' is ${record.state}; only FAILED or CANCELLED jobs can be retried`,
        { violations: [{ field: 'job_id', description: `job is ${record.state}` }] },
      );
    await this.lifecycle.admit(clientId, [id]);
    await this.flows.remove(record);
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
        outputs: [],
        runs: r.runs + 1,
        counted: true,
        deadlineAt: Date.now() + r.budgetMs,
      }),
      { fromTerminal: true },
    );
    if (updated) await this.lifecycle.enqueue(updated, queued);
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
    yield { job: toProtoJob(record) };
    if (TERMINAL.has(record.state)) return;
    if (record.state === 'QUEUED' && !record.held)
      yield { queued: { ahead: await this.flows.ahead(record) } };
    const reader = createRedis(this.options.redisUrl);
    const stop = () => reader.disconnect();
    signal.addEventListener('abort', stop, { once: true });
    try {
      let from = snapshot.lastEventId;
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
              progress: {
                stage: event.stage,
                step: event.step,
                total: event.total,
                preview: event.preview && toProtoArtifact(event.preview),
              },
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

  // ---- artifacts ---------------------------------------------------------------------------

  /** The bytes of one of the client's artifacts: a header, then chunks (see downloadArtifact). */
  downloadArtifact(
    clientId: string,
    req: processingV1.DownloadArtifactRequest,
    signal?: AbortSignal,
  ): AsyncGenerator<processingV1.DownloadArtifactResponse> {
    return downloadArtifact(this.artifacts, clientId, req, signal);
  }

  /** Deletes the artifacts older than the TTL now; resolves to how many were deleted. */
  sweepArtifacts(): Promise<number> {
    return this.retention.sweep();
  }

  // ---- batches and sessions ---------------------------------------------------------------

  submitBatch(clientId: string, req: processingV1.SubmitBatchRequest, traceparent?: string) {
    return this.batches.submit(clientId, req, traceparent);
  }

  getBatch(clientId: string, batchId: string): Promise<processingV1.Batch> {
    return this.batches.get(clientId, batchId);
  }

  cancelBatch(clientId: string, batchId: string): Promise<processingV1.Batch> {
    return this.batches.cancel(clientId, batchId);
  }

  createSession(clientId: string, req: processingV1.CreateSessionRequest): Promise<SessionRecord> {
    return this.sessionControl.create(clientId, req);
  }

  requireSession(clientId: string, id: string): Promise<SessionRecord> {
    return this.sessionControl.require(clientId, id);
  }

  pauseSession(clientId: string, id: string): Promise<SessionRecord> {
    return this.sessionControl.pause(clientId, id);
  }

  resumeSession(clientId: string, id: string): Promise<SessionRecord> {
    return this.sessionControl.resume(clientId, id);
  }

  cancelSession(clientId: string, id: string): Promise<SessionRecord> {
    return this.sessionControl.cancel(clientId, id);
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
}
