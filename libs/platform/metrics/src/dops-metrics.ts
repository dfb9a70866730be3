import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Job counts of one BullMQ queue by state (`Queue.getJobCounts()`), for `dops_queue_jobs`. */
export interface QueueDepth {
  queue: string;
  counts: Record<string, number>;
}

/** One device's memory as its workers report it, for `dops_device_memory_bytes`. */
export interface DeviceMemoryReading {
  device: string;
  totalBytes: number;
  usedBytes: number;
  freeBytes: number;
}

/** A worker's restart count since its service started, for `dops_worker_restarts_total`. */
export interface WorkerRestarts {
  worker: string;
  device: string;
  restarts: number;
}

type Source<T> = () => Promise<readonly T[]> | readonly T[];

const SECONDS_SHORT = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
const SECONDS_COMPUTE = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600];
const BATCH_SIZES = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32];

/**
 * The metrics of a dops process, every one named here once (`dops_*`), on one registry with
 * Node's default process metrics. Gauges of things other objects own (queue depth, device memory,
 * worker restarts) are read at scrape time from the sources added with `add*Source`; a source
 * that throws leaves its series out of that scrape and never fails it.
 */
export class DopsMetrics {
  readonly registry: Registry;
  /** Seconds a stage job waited in its queue before a worker took it (labels queue, stage). */
  readonly stageQueueWait: Histogram<'queue' | 'stage'>;
  /** Seconds a stage ran in its worker process (labels stage, outcome: succeeded | failed). */
  readonly stageCompute: Histogram<'stage' | 'outcome'>;
  /** Jobs that reached a terminal state (labels state: succeeded | failed | cancelled, code: '' or the error code). */
  readonly jobsFinished: Counter<'state' | 'code'>;
  /** Model loads by where the weights came from (source: disk | ram | device) and outcome. */
  readonly modelLoads: Counter<'source' | 'outcome'>;
  /** Seconds per successful model load (label source). */
  readonly modelLoadSeconds: Histogram<'source'>;
  /** Requests joined into one worker call (label method). */
  readonly batchSize: Histogram<'method'>;
  /** Images written by a stage; `rate(dops_images_total[1m])` is images per second. */
  readonly images: Counter<'stage'>;

  private readonly queueSources: Source<QueueDepth>[] = [];
  private readonly memorySources: Source<DeviceMemoryReading>[] = [];
  private readonly restartSources: Source<WorkerRestarts>[] = [];

  /** A registry of its own; `defaultMetrics` (default true) adds Node's process metrics to it. */
  constructor(options: { defaultMetrics?: boolean } = {}) {
    const registry = new Registry();
    this.registry = registry;
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });
    const registers = [registry];
    this.stageQueueWait = new Histogram({
      name: 'dops_stage_queue_wait_seconds',
      help: 'Seconds a stage job waited in its queue before a worker took it',
      labelNames: ['queue', 'stage'],
      buckets: SECONDS_SHORT,
      registers,
    });
    this.stageCompute = new Histogram({
      name: 'dops_stage_compute_seconds',
      help: 'Seconds a stage job ran in its worker process',
      labelNames: ['stage', 'outcome'],
      buckets: SECONDS_COMPUTE,
      registers,
    });
    this.jobsFinished = new Counter({
      name: 'dops_jobs_finished_total',
      help: 'Jobs that reached a terminal state, by state and error code',
      labelNames: ['state', 'code'],
      registers,
    });
    this.modelLoads = new Counter({
      name: 'dops_model_loads_total',
      help: 'Model loads by the tier the weights came from (disk, ram, device) and outcome',
      labelNames: ['source', 'outcome'],
      registers,
    });
    this.modelLoadSeconds = new Histogram({
      name: 'dops_model_load_seconds',
      help: 'Seconds per successful model load, by source tier',
      labelNames: ['source'],
      buckets: SECONDS_COMPUTE,
      registers,
    });
    this.batchSize = new Histogram({
      name: 'dops_batch_size',
      help: 'Requests joined into one worker call (dynamic batches)',
      labelNames: ['method'],
      buckets: BATCH_SIZES,
      registers,
    });
    this.images = new Counter({
      name: 'dops_images_total',
      help: 'Images written, by stage',
      labelNames: ['stage'],
      registers,
    });
    const queueSources = this.queueSources;
    new Gauge({
      name: 'dops_queue_jobs',
      help: 'Jobs in a queue by state (BullMQ getJobCounts, read at scrape)',
      labelNames: ['queue', 'state'],
      registers,
      async collect() {
        this.reset();
        for (const depth of await readAll(queueSources))
          for (const [state, n] of Object.entries(depth.counts)) this.set({ queue: depth.queue, state }, n);
      },
    });
    const memorySources = this.memorySources;
    new Gauge({
      name: 'dops_device_memory_bytes',
      help: 'Device memory as the workers report it (kind: total, used, free)',
      labelNames: ['device', 'kind'],
      registers,
      async collect() {
        this.reset();
        for (const m of await readAll(memorySources)) {
          this.set({ device: m.device, kind: 'total' }, m.totalBytes);
          this.set({ device: m.device, kind: 'used' }, m.usedBytes);
          this.set({ device: m.device, kind: 'free' }, m.freeBytes);
        }
      },
    });
    const restartSources = this.restartSources;
    new Counter({
      name: 'dops_worker_restarts_total',
      help: 'Worker processes spawned again after the first (crash restarts and resets)',
      labelNames: ['worker', 'device'],
      registers,
      async collect() {
        // The supervisors own the count; the counter mirrors it (monotonic while the service runs).
        this.reset();
        for (const w of await readAll(restartSources))
          this.inc({ worker: w.worker, device: w.device }, w.restarts);
      },
    });
  }

  /** Queue depths read at each scrape (e.g. from BullMQ Queue objects). */
  addQueueSource(source: Source<QueueDepth>): void {
    this.queueSources.push(source);
  }

  /** Device memory read at each scrape (e.g. a worker pool's memory snapshot). */
  addDeviceMemorySource(source: Source<DeviceMemoryReading>): void {
    this.memorySources.push(source);
  }

  /** Worker restart counts read at each scrape. */
  addWorkerRestartSource(source: Source<WorkerRestarts>): void {
    this.restartSources.push(source);
  }
}

async function readAll<T>(sources: readonly Source<T>[]): Promise<T[]> {
  const lists = await Promise.all(
    sources.map(async (source) => {
      try {
        return await source();
      } catch {
        // A source that cannot answer now (Redis down, a worker restarting) drops its series.
        return [];
      }
    }),
  );
  return lists.flat();
}

let processWide: DopsMetrics | undefined;

/**
 * The metrics of this process, made on first use: every library records into it and the
 * service's /metrics endpoint serves it. Throws nothing.
 */
export function processMetrics(): DopsMetrics {
  processWide ??= new DopsMetrics();
  return processWide;
}
