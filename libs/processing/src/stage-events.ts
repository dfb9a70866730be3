import { Job, QueueEvents } from 'bullmq';
import { DopsError, ensureDopsError } from '@dops/errors';
import {
  ErrorThrottle,
  connectionOptions,
  errorFields,
  decodeStageError,
  isCancelled,
  isStageProgress,
  parseStageJobId,
  type Artifact,
  type Redis,
  type StageResult,
  type WarnLogger,
} from '@dops/queue';
import { TERMINAL, type JobRecord } from './job-record';
import type { JobArtifacts } from './job-artifacts';
import type { JobStore } from './job-store';
import { toRequestFields } from './stage-fields';
import type { Keys } from './keys';

export interface StageEventsOptions {
  redisUrl: string;
  prefix: string;
  /** Where Redis connection errors go, one line each (throttled). */
  logger?: WarnLogger;
}

/**
 * Folds the stage queues' events into job state: `active` → RUNNING at that stage, `progress` →
 * a progress event, `completed` of the last stage → SUCCEEDED with its images, `failed` → FAILED
 * (or CANCELLED once a cancel was requested) with the error that stage raised itself. Each
 * event is applied once across replicas, and listening resumes after the last event applied.
 */
export class StageEvents {
  private readonly events = new Map<string, QueueEvents>();
  private readonly errors: ErrorThrottle;

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly store: JobStore,
    private readonly options: StageEventsOptions,
    /** The BullMQ job of a stage job id in a queue (to tell a stage that ran from a parent failed by its child). */
    private readonly stageJob: (queueName: string, stageJobId: string) => Promise<Job | undefined>,
    private readonly artifacts: JobArtifacts,
  ) {
    this.errors = new ErrorThrottle(options.logger, 'queue connection error');
  }

  async close(): Promise<void> {
    const closing = Promise.all([...this.events.values()].map((e) => e.close()));
    // With Redis down, BullMQ 6.7's QueueEvents.close waits for an 'end' that its reconnecting
    // connection never emits: the shutdown does not wait for it then.
    if (this.redis.status === 'ready') await closing;
    else closing.catch(() => undefined);
  }

  async listen(queueName: string): Promise<void> {
    if (this.events.has(queueName)) return;
    const lastEventId = (await this.redis.get(this.keys.lastEvent(queueName))) ?? undefined;
    const events = new QueueEvents(queueName, {
      connection: connectionOptions(this.options.redisUrl),
      prefix: this.options.prefix,
      lastEventId,
    });
    events.on('error', (err) => this.errors.report(err, { queue: queueName, component: 'queue-events' }));
    this.events.set(queueName, events);
    // One queue's events are applied in the order BullMQ wrote them (an `active` before the
    // `delayed` that hands the same job back), one after the other.
    let chain: Promise<unknown> = Promise.resolve();
    const once = (id: string, apply: () => Promise<unknown>) => {
      chain = chain
        .then(async () => {
          // Every replica of this service reads the same events; the first one applies each.
          if ((await this.redis.set(this.keys.seenEvent(queueName, id), '1', 'EX', 3600, 'NX')) !== 'OK')
            return;
          await apply();
          await this.redis.set(this.keys.lastEvent(queueName), id);
        })
        .catch((err: unknown) =>
          this.options.logger?.warn(
            { queue: queueName, event: id, ...errorFields(err) },
            'applying a queue event failed',
          ),
        );
    };
    events.on('active', ({ jobId }, id) => {
      const s = parseStageJobId(jobId);
      if (s)
        once(id, () =>
          this.store.update(
            s.jobId,
            (r) => ({ ...r, state: 'RUNNING', stage: s.stage, counted: false, held: false }),
            {
              event: { kind: 'stage', stage: s.stage, status: 'started' },
            },
          ),
        );
    });
    events.on('delayed', ({ jobId }, id) => {
      // Handed back without running (a paused consumer), or waiting for its next attempt: queued again.
      const s = parseStageJobId(jobId);
      if (s)
        once(id, () =>
          this.store.update(
            s.jobId,
            (r) => (r.state === 'RUNNING' && r.stage === s.stage ? { ...r, state: 'QUEUED' } : undefined),
            {
              event: { kind: 'stage', stage: s.stage, status: 'queued' },
            },
          ),
        );
    });
    events.on('progress', ({ jobId, data }, id) => {
      const s = parseStageJobId(jobId);
      if (s && isStageProgress(data))
        once(id, () =>
          this.store.appendEvent(s.jobId, {
            kind: 'progress',
            stage: s.stage,
            step: data.step,
            total: data.total,
            preview: data.preview,
          }),
        );
    });
    events.on('completed', ({ jobId, returnvalue }, id) => {
      const s = parseStageJobId(jobId);
      if (!s) return;
      once(id, async () => {
        const result = (
          typeof returnvalue === 'string' ? JSON.parse(returnvalue) : returnvalue
        ) as StageResult;
        await this.completed(s.jobId, s.stage, result?.images ?? []);
      });
    });
    events.on('failed', ({ jobId, failedReason }, id) => {
      const s = parseStageJobId(jobId);
      if (!s) return;
      once(id, async () => {
        // A stage that failed because an earlier stage (its child) did never ran its own work: the
        // earlier stage's own failed event carries the error.
        if (
          (await this.failedChildren(queueName, jobId)) > 0 &&
          !(await isCancelled(this.redis, this.options.prefix, s.jobId))
        )
          return;
        const error = await this.errorOf(s.jobId, failedReason);
        const ended = await this.store.update(s.jobId, (r) => ({
          ...r,
          state: error.code === 'CANCELLED' ? 'CANCELLED' : 'FAILED',
          counted: false,
          error: {
            code: error.code,
            message: error.message,
            retryable: error.retryable,
            stage: s.stage,
            violations: error.violations.length ? toRequestFields(s.stage, error.violations) : undefined,
          },
        }));
        if (ended) await this.artifacts.settle(ended);
      });
    });
    await events.waitUntilReady();
  }

  /**
   * A stage's images: an earlier stage's are noted as the job's outputs (removed when it ends); the
   * last stage's are published, then the job SUCCEEDED with them. Images of a job that ended
   * otherwise meanwhile (cancelled, failed) are removed at once; a failed publish fails the job
   * with its error (UNAVAILABLE when the store is down: RetryJob may run it again).
   */
  private async completed(jobId: string, stage: string, images: Artifact[]): Promise<void> {
    const paths = images.map((i) => i.path);
    const record = await this.store.get(jobId);
    const event = { kind: 'stage', stage, status: 'completed' } as const;
    const outputs = (r: JobRecord) => [...(r.outputs ?? []), ...paths];
    if (!record || TERMINAL.has(record.state)) {
      await this.artifacts.discard(paths);
      return;
    }
    if (record.plan[record.plan.length - 1]?.stage !== stage) {
      const noted = await this.store.update(jobId, (r) => ({ ...r, outputs: outputs(r) }), { event });
      if (!noted) await this.artifacts.discard(paths);
      return;
    }
    let ended: JobRecord | undefined;
    try {
      const published = await this.artifacts.publish(record, images);
      ended = await this.store
        .update(
          jobId,
          (r) => ({ ...r, state: 'SUCCEEDED', images: published, outputs: outputs(r), counted: false }),
          { event },
        )
        // A lost Redis reply (the exec committed, its answer never came) rejects a stored change:
        // the job SUCCEEDED with these files, so they must stay.
        .catch(async (err: unknown) => {
          const now = await this.store.get(jobId);
          if (now?.state !== 'SUCCEEDED') throw err;
          return now;
        });
      if (!ended) await this.artifacts.retract(record.clientId, published);
    } catch (err) {
      const error = ensureDopsError(err);
      ended = await this.store.update(jobId, (r) => ({
        ...r,
        state: 'FAILED',
        counted: false,
        outputs: outputs(r),
        error: { code: error.code, message: error.message, retryable: error.retryable, stage },
      }));
    }
    if (ended) await this.artifacts.settle(ended);
    else await this.artifacts.discard(paths);
  }

  /** How many children (earlier stages) of a stage job failed; 0 when it is gone. */
  private async failedChildren(queueName: string, stageJobId: string): Promise<number> {
    const job = await this.stageJob(queueName, stageJobId);
    const counts = job ? await job.getDependenciesCount({ failed: true }) : {};
    return counts.failed ?? 0;
  }

  /** The stage's own error; CANCELLED whatever it failed with once the job's cancel was requested. */
  private async errorOf(jobId: string, failedReason: string | undefined): Promise<DopsError> {
    if (await isCancelled(this.redis, this.options.prefix, jobId))
      return new DopsError('CANCELLED', `job ${jobId} was cancelled`, { retryable: false });
    return decodeStageError(failedReason);
  }
}
