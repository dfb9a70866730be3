import { FlowProducer, Job, Queue, type FlowJob } from 'bullmq';
import { DopsError } from '@dops/errors';
import {
  ErrorThrottle,
  STAGE_QUEUE,
  connectionOptions,
  jobsAhead,
  listNodes,
  nodeQueueName,
  queueTelemetry,
  stageBackoff,
  stageJobId,
  type Redis,
  type StageJobData,
  type WarnLogger,
} from '@dops/queue';
import type { JobRecord } from './job-record';

export interface FlowOptions {
  redisUrl: string;
  prefix: string;
  retentionMs: number;
  /** Queued first stages, over every queue a generation can land in, before RESOURCE_EXHAUSTED. */
  maxQueued: number;
  retryAfterMs: number;
  /** BullMQ attempts of a stage (retryable codes only). */
  attempts: number;
  backoffMs: number;
  /** Where Redis connection errors go, one line each (throttled). */
  logger?: WarnLogger;
}

/**
 * A job's stages as one BullMQ flow (the last stage is the root, each earlier stage its child),
 * routed to a node's own inference queue when a free node holds the model; the queue bound; and
 * removal of a flow that has not started.
 */
export class Flows {
  private readonly producer: FlowProducer;
  private readonly queues = new Map<string, Queue>();
  private readonly errors: ErrorThrottle;

  constructor(
    private readonly redis: Redis,
    private readonly options: FlowOptions,
    /** Called with every queue a flow is added to, before it is added (its events are listened to). */
    private readonly onQueue: (name: string) => Promise<void>,
  ) {
    this.errors = new ErrorThrottle(options.logger, 'queue connection error');
    // BullMQ's telemetry: each stage job continues the trace of the call that added the flow.
    this.producer = new FlowProducer({
      connection: connectionOptions(options.redisUrl),
      prefix: options.prefix,
      telemetry: queueTelemetry(),
    });
    this.producer.on('error', (err) => this.errors.report(err, { component: 'flow-producer' }));
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close()));
    await this.producer.close();
  }

  /** Adds the job's flow at BullMQ `priority`; returns the queue its first stage went to. */
  async add(record: JobRecord, priority: number): Promise<string> {
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
      await this.onQueue(queueName);
      const age = Math.ceil(this.options.retentionMs / 1000);
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
          removeOnComplete: { age },
          removeOnFail: { age },
        },
        children: flow ? [flow] : undefined,
      };
    }
    await this.producer.add(flow!, { queuesOptions: {} });
    return firstQueue;
  }

  /**
   * Removes the job's flow (root and children); false when a stage is running (locked), or with
   * `keepFinished` when the flow already completed or failed.
   */
  async remove(record: JobRecord, options: { keepFinished?: boolean } = {}): Promise<boolean> {
    const last = record.plan[record.plan.length - 1]!;
    const queue =
      STAGE_QUEUE[last.stage] === 'inference' ? (record.firstQueue ?? 'inference') : STAGE_QUEUE[last.stage];
    const root = await Job.fromId(this.queue(queue), stageJobId(record.id, last.stage));
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

  /** Jobs ahead of the record's first stage in its queue. */
  ahead(record: JobRecord): Promise<number> {
    return jobsAhead(
      this.redis,
      this.options.prefix,
      record.firstQueue ?? 'inference',
      stageJobId(record.id, 'generate'),
    );
  }

  /**
   * RESOURCE_EXHAUSTED with a retry hint when `adding` more first stages would pass the bound,
   * counted over the shared `inference` queue and every node's own one (a job for a resident
   * model lands in `inference@<node>`).
   */
  async checkCapacity(adding: number): Promise<void> {
    const nodes = await listNodes(this.redis, this.options.prefix);
    const names = [
      'inference',
      ...nodes.filter((n) => n.service === 'inference').map((n) => nodeQueueName('inference', n.nodeId)),
    ];
    const counts = await Promise.all(
      names.map((name) => this.queue(name).getJobCounts('wait', 'prioritized', 'delayed')),
    );
    const queued = counts.flatMap((c) => Object.values(c)).reduce((a, b) => a + b, 0);
    if (queued + adding > this.options.maxQueued)
      throw new DopsError(
        'RESOURCE_EXHAUSTED',
        `the inference queues are full (${queued} of ${this.options.maxQueued} queued); retry later`,
        { retryable: true, retryAfterMs: this.options.retryAfterMs },
      );
  }

  queue(name: string): Queue {
    let q = this.queues.get(name);
    if (!q) {
      q = new Queue(name, {
        connection: connectionOptions(this.options.redisUrl),
        prefix: this.options.prefix,
        telemetry: queueTelemetry(),
      });
      q.on('error', (err) => this.errors.report(err, { queue: name }));
      this.queues.set(name, q);
    }
    return q;
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
}
