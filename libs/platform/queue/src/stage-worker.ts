import { DelayedError, Worker, type Job, type Telemetry } from 'bullmq';
import type { Redis } from 'ioredis';
import { DopsError } from '@dops/errors';
import { processMetrics } from '@dops/metrics';
import { contextFromTraceparent, currentTraceparent, withSpan } from '@dops/telemetry';
import { context, trace } from '@opentelemetry/api';
import { ErrorThrottle } from './error-throttle';
import { queueTelemetry } from './queue-telemetry';
import { CancelListener, cancelledError, isCancelled } from './cancel';
import { connectionOptions, createRedis } from './connection';
import type { StageName } from './names';
import type { StageJobData, StageProgress, StageResult } from './stage-data';
import { encodeStageError } from './stage-error';

/** A job fetched while paused goes back to the queue for this long. */
const PAUSED_RETRY_MS = 1_000;

/** What a stage processor gets for one job. */
export interface StageContext<P> {
  data: StageJobData<P>;
  /** Aborted on cancel (reason: CANCELLED DopsError) or at the deadline (DEADLINE_EXCEEDED). */
  signal: AbortSignal;
  deadline: Date;
  /** 1 on the first attempt. */
  attempt: number;
  /** `job.updateProgress({stage, ...progress})`; failures are logged, never thrown. */
  reportProgress(progress: Omit<StageProgress, 'stage'>): void;
  /** The return values of this stage's children (the previous stage): its input images. */
  inputs(): Promise<StageResult[]>;
  job: Job<StageJobData<P>, StageResult>;
}

export type StageProcessor<P> = (ctx: StageContext<P>) => Promise<StageResult>;

export interface StageWorkerOptions<P> {
  /** Queues to consume, e.g. `['inference', 'inference@node-a']`; one BullMQ Worker each. */
  queues: readonly string[];
  redisUrl: string;
  /** Default `dops`. */
  prefix?: string;
  /** Jobs run at once per queue. Default 1. */
  concurrency?: number;
  /** Default 30 000 ms. */
  lockDurationMs?: number;
  /** Default 30 000 ms. */
  stalledIntervalMs?: number;
  /** Default 1. */
  maxStalledCount?: number;
  process: StageProcessor<P>;
  /** Only stages named here run; a job of another stage fails INVALID_ARGUMENT. Default any. */
  stages?: readonly StageName[];
  logger?: { info(o: object, m?: string): void; warn(o: object, m?: string): void };
  /**
   * BullMQ's telemetry: each job runs in a consumer span that continues the trace of the call
   * that added its flow. Default `queueTelemetry()`.
   */
  telemetry?: Telemetry;
}

/**
 * A BullMQ Worker per queue that runs stage jobs by the contract: at pick-up a cancelled job
 * fails CANCELLED and one past its deadline DEADLINE_EXCEEDED without running; while it runs, a
 * cancel (pub/sub) or the deadline aborts its signal; progress goes to `job.updateProgress`;
 * errors are encoded (non-retryable → UnrecoverableError) and retried with `dops-jitter`.
 * `start()` rejects when Redis cannot be reached.
 */
export class StageWorker<P = Record<string, unknown>> {
  private readonly workers: Worker[] = [];
  private readonly cancels: CancelListener;
  private readonly redis: Redis;
  private readonly prefix: string;
  private paused = false;
  private readonly errors: ErrorThrottle;

  constructor(private readonly options: StageWorkerOptions<P>) {
    this.prefix = options.prefix ?? 'dops';
    this.cancels = new CancelListener(options.redisUrl, this.prefix);
    this.errors = new ErrorThrottle(options.logger, 'queue connection error');
    this.redis = createRedis(options.redisUrl, { onError: (err) => this.errors.report(err) });
  }

  async start(): Promise<void> {
    await this.cancels.start();
    for (const name of this.options.queues) {
      const worker = new Worker<StageJobData<P>, StageResult>(
        name,
        (job, token, signal) => this.run(job, signal, token),
        {
          connection: connectionOptions(this.options.redisUrl),
          prefix: this.prefix,
          concurrency: this.options.concurrency ?? 1,
          lockDuration: this.options.lockDurationMs ?? 30_000,
          stalledInterval: this.options.stalledIntervalMs ?? 30_000,
          maxStalledCount: this.options.maxStalledCount ?? 1,
          autorun: false,
          telemetry: this.options.telemetry ?? queueTelemetry(),
        },
      );
      worker.on('error', (err) => this.errors.report(err, { queue: name }));
      this.workers.push(worker);
      void worker.run();
      await worker.waitUntilReady();
      if (this.paused) await worker.pause(true);
    }
  }

  /**
   * Takes no new job (running ones go on) until `resume()`: the queue keeps them for another
   * consumer or for later. Idempotent.
   */
  async pause(): Promise<void> {
    this.paused = true;
    await Promise.all(this.workers.map((w) => w.pause(true)));
  }

  async resume(): Promise<void> {
    this.paused = false;
    for (const w of this.workers) w.resume();
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** Stops taking jobs; waits for running ones unless `force`. */
  async close(force = false): Promise<void> {
    await Promise.all(this.workers.map((w) => w.close(force)));
    await this.cancels.close();
    this.redis.disconnect();
  }

  private async run(
    job: Job<StageJobData<P>, StageResult>,
    bullSignal?: AbortSignal,
    token?: string,
  ): Promise<StageResult> {
    const data = job.data;
    if (this.paused && token) {
      // Fetched by a blocking read that was already waiting when pause() came: hand it back
      // untouched (no attempt used); it waits again for this or another consumer.
      await job.moveToDelayed(Date.now() + PAUSED_RETRY_MS, token);
      throw new DelayedError();
    }
    try {
      if (this.options.stages && !this.options.stages.includes(data.stage))
        throw DopsError.invalidArgument(
          'stage',
          `this worker runs ${this.options.stages.join(', ')}, not '${data.stage}'`,
        );
      if (await isCancelled(this.redis, this.prefix, data.jobId)) throw cancelledError(data.jobId);
      if (Date.now() >= data.deadlineAt) throw deadlineError(data.jobId);
    } catch (err) {
      throw encodeStageError(err);
    }
    const registration = this.cancels.register(data.jobId);
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(deadlineError(data.jobId)), data.deadlineAt - Date.now());
    const signals = [registration.signal, deadline.signal];
    if (bullSignal) signals.push(bullSignal);
    const signal = AbortSignal.any(signals);
    // A cancel published between the check above and the registration must not be lost.
    if (await isCancelled(this.redis, this.prefix, data.jobId)) this.cancels.abort(data.jobId);
    // Read once per job: the wait metric and the stage's inputs both need the children's results.
    let kids: Promise<Record<string, StageResult>> | undefined;
    const childValues = () => (kids ??= job.getChildrenValues<StageResult>());
    const metrics = processMetrics();
    if (job.attemptsMade === 0)
      metrics.stageQueueWait.observe(
        { queue: job.queueName, stage: data.stage },
        (await queueWaitMs(job, childValues)) / 1000,
      );
    const started = performance.now();
    try {
      const result = await this.inStageSpan(data, () => {
        this.options.logger?.info(
          { jobId: data.jobId, stage: data.stage, attempt: job.attemptsMade + 1 },
          'stage started',
        );
        return this.options.process({
          // The worker's spans hang under this stage's span.
          data: { ...data, traceparent: currentTraceparent() ?? data.traceparent },
          signal,
          deadline: new Date(data.deadlineAt),
          attempt: job.attemptsMade + 1,
          reportProgress: (progress) => {
            job
              .updateProgress({ stage: data.stage, ...progress })
              .catch((err: unknown) =>
                this.options.logger?.warn({ err: String(err), jobId: data.jobId }, 'progress update failed'),
              );
          },
          inputs: async () => Object.values(await childValues()),
          job,
        });
      });
      metrics.stageCompute.observe(
        { stage: data.stage, outcome: 'succeeded' },
        (performance.now() - started) / 1000,
      );
      metrics.images.inc({ stage: data.stage }, result.images.length);
      // The next stage's queue wait starts here.
      return { ...result, finishedAt: Date.now() };
    } catch (err) {
      metrics.stageCompute.observe(
        { stage: data.stage, outcome: 'failed' },
        (performance.now() - started) / 1000,
      );
      throw encodeStageError(signal.aborted && signal.reason instanceof DopsError ? signal.reason : err);
    } finally {
      clearTimeout(timer);
      registration.release();
    }
  }

  /**
   * Runs `fn` in a span `stage <name>` with the job's id: under BullMQ's consumer span when
   * telemetry is on, else continuing the job's `traceparent` (the SubmitJob call's trace).
   */
  private inStageSpan<T>(data: StageJobData<P>, fn: () => Promise<T>): Promise<T> {
    const active = trace.getSpan(context.active())?.spanContext();
    const parent =
      active && trace.isSpanContextValid(active)
        ? context.active()
        : contextFromTraceparent(data.traceparent);
    return context.with(parent, () =>
      withSpan(`stage ${data.stage}`, fn, {
        attributes: { 'dops.job_id': data.jobId, 'dops.stage': data.stage },
      }),
    );
  }
}

/** Milliseconds the job waited: since it was added (or its delay ended), or since its last child finished. */
async function queueWaitMs(
  job: Job<StageJobData<unknown>, StageResult>,
  childValues: () => Promise<Record<string, StageResult>>,
): Promise<number> {
  let ready = job.timestamp + (job.opts.delay ?? 0);
  const children = Object.values(await childValues().catch(() => ({})));
  for (const child of children as StageResult[])
    if (typeof child.finishedAt === 'number') ready = Math.max(ready, child.finishedAt);
  return Math.max(0, (job.processedOn ?? Date.now()) - ready);
}

function deadlineError(jobId: string): DopsError {
  return new DopsError('DEADLINE_EXCEEDED', `job '${jobId}' passed its deadline`, { retryable: false });
}
