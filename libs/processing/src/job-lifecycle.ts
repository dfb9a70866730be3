import { randomUUID } from 'node:crypto';
import { inferenceV1, processingV1 } from '@dops/proto';
import { publishCancel, type Redis } from '@dops/queue';
import type { ClientQuotas } from './client-quotas';
import type { Flows } from './flows';
import type { IdempotencyKeys } from './idempotency';
import type { JobArtifacts } from './job-artifacts';
import { TERMINAL, type JobRecord } from './job-record';
import type { JobStore } from './job-store';
import type { SessionRecord } from './session-store';
import { planStages, type CheckedSpec, type WorkflowLimits } from './workflow';

export interface LifecycleOptions extends WorkflowLimits {
  prefix: string;
  defaultDeadlineMs: number;
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

export function newId(): string {
  return randomUUID().replace(/-/g, '');
}

/** What a new record needs beyond its checked spec. */
export interface RecordContext {
  clientId: string;
  req: Pick<processingV1.SubmitJobRequest, 'priority' | 'deadlineSeconds'>;
  session: SessionRecord | undefined;
  traceparent: string | undefined;
  batchId?: string;
}

/**
 * What jobs, batches and sessions share: admission (queue bound, then the client's quota), new
 * records, queueing a record's flow, and cancelling.
 */
export class JobLifecycle {
  constructor(
    private readonly redis: Redis,
    private readonly store: JobStore,
    private readonly flows: Flows,
    private readonly quotas: ClientQuotas,
    private readonly idempotency: IdempotencyKeys,
    private readonly options: LifecycleOptions,
    private readonly artifacts: JobArtifacts,
  ) {}

  /**
   * Room for `jobIds` of the client: the queue bound, then the client's queued-job quota
   * (reserving them). On RESOURCE_EXHAUSTED the idempotency key `key` is given up: nothing was queued.
   */
  async admit(clientId: string, jobIds: string[], key = ''): Promise<void> {
    try {
      await this.flows.checkCapacity(jobIds.length);
      await this.quotas.reserveQueued(clientId, jobIds);
    } catch (err) {
      await this.idempotency.release(clientId, key);
      throw err;
    }
  }

  /** A new QUEUED record (held when its session is paused); stores its inline input images. */
  async newRecord(id: string, checked: CheckedSpec, context: RecordContext): Promise<JobRecord> {
    const { clientId, req, session, traceparent, batchId } = context;
    const now = Date.now();
    const budgetMs = req.deadlineSeconds ? req.deadlineSeconds * 1000 : this.options.defaultDeadlineMs;
    return {
      id,
      state: 'QUEUED',
      template: checked.template,
      clientId,
      sessionId: session?.id,
      batchId,
      priority: req.priority,
      stage: '',
      plan: await planStages(id, checked, this.options),
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

  /** Stores a new record and, unless held, queues it. */
  async create(record: JobRecord): Promise<void> {
    await this.store.create(record);
    if (!record.held) await this.enqueue(record);
  }

  /** Adds the record's flow at its fair priority. */
  async enqueue(record: JobRecord, queuedBefore?: number): Promise<void> {
    const queued = queuedBefore ?? Math.max(0, (await this.store.queuedOf(record.clientId)) - 1);
    const firstQueue = await this.flows.add(record, fairPriority(record.priority, queued));
    await this.store.update(record.id, (r) => ({ ...r, firstQueue }));
  }

  /** Cancels a job; a terminal one is returned unchanged. */
  async cancel(record: JobRecord): Promise<JobRecord> {
    const id = record.id;
    if (TERMINAL.has(record.state)) return record;
    await publishCancel(this.redis, this.options.prefix, id);
    const removed = record.held || (await this.flows.remove(record, { keepFinished: true }));
    if (removed) {
      // Removed means no stage of it runs or will run. A RUNNING record can be removed too: its
      // stage failed retryably and waits (delayed) for its next attempt, or stalled back to wait.
      const ended = await this.store.update(id, (r) =>
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
      // Files of stages that ran before it was cancelled (a generation awaiting its upscale).
      if (ended) await this.artifacts.settle(ended);
    }
    // A running stage aborts on the published cancel; its failure makes the job CANCELLED.
    return (await this.store.get(id)) ?? record;
  }

  /**
   * Cancels `jobs`, the queued ones before the running ones: cancelling a running job first
   * frees its worker, which could then pick up a queued job of the same group before its cancel.
   */
  async cancelAll(jobs: JobRecord[]): Promise<void> {
    const open = jobs.filter((j) => !TERMINAL.has(j.state));
    for (const job of [
      ...open.filter((j) => j.state !== 'RUNNING'),
      ...open.filter((j) => j.state === 'RUNNING'),
    ])
      await this.cancel(job);
  }
}

/** The spec with the session's defaults under the fields it leaves empty. */
export function withDefaults(
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
