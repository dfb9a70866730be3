import { hostname } from 'node:os';
import { inferenceV1 } from '@dops/proto';
import {
  NodeAnnouncer,
  StageWorker,
  createRedis,
  listNodes,
  nodeQueueName,
  type QueueConfig,
  type Redis,
  type StageResult,
  type StageWorkerOptions,
} from '@dops/queue';
import type { DeviceFleet, WorkerPool } from '@dops/worker-pool';
import type { GenerateOutcome, Generator } from '../generator';
import type { InferenceModels } from '../inference-models';

export interface GenerateStageOptions {
  redisUrl: string;
  /**
   * Brings a model this node does not hold onto a device's VRAM, decided here (NodeLoader:
   * identity from the registry, reservation from the memory service, evictions and the load
   * through the device's lane). Unset: such a job fails FAILED_PRECONDITION.
   */
  ensureLoaded?: (modelId: string, signal: AbortSignal) => Promise<unknown>;
  /** Called once the job's device is chosen (NodeLoader.used: the model's reservation counts as used now). */
  onUse?: (modelId: string, deviceId: string) => void;
  queue: QueueConfig;
  logger?: { info(o: object, m?: string): void; warn(o: object, m?: string): void };
  /** Cordoning every device of this node pauses the consumer: queued jobs wait, or another node takes them. */
  fleet?: DeviceFleet;
  /** Jobs taken at once per device (unless queue.concurrency says otherwise); the lane batches them. Default 1. */
  jobsPerDevice?: number;
}

/**
 * The inference stage consumer: a StageWorker on `inference` and `inference@<nodeId>` that runs
 * `generate` stage jobs on the Generator (cancel → the worker stops within a step; the job's
 * deadline becomes the worker deadline), reports step progress, and returns `{images}`; plus
 * this node's announcement (devices, the models each worker holds on VRAM, active jobs).
 * Concurrency defaults to the number of devices.
 *
 * Processing routes a job to `inference@<node>` for model affinity, and only that node consumes
 * that queue, so BullMQ's stalled-job check of that queue runs only there: a node that dies
 * (kill -9, lost host) would strand its running and waiting jobs. So every node also adopts the
 * queues of dead nodes (no live announcement): it consumes `inference@<dead>` until that node
 * announces itself again, which hands its stalled job back to the queue and runs it.
 */
export class GenerateStage {
  private readonly worker: StageWorker<Record<string, unknown>>;
  private readonly announcer: NodeAnnouncer;
  private readonly redis: Redis;
  private readonly workerOptions: Omit<StageWorkerOptions<Record<string, unknown>>, 'queues'>;
  /** Queues of dead nodes this node consumes, by node id. */
  private readonly adopted = new Map<string, StageWorker<Record<string, unknown>>>();
  private adoptTimer?: NodeJS.Timeout;
  private adopting?: Promise<void>;
  private stopped = false;
  private active = 0;
  readonly nodeId: string;
  private readonly prefix: string;
  private readonly logger?: GenerateStageOptions['logger'];
  private readonly fleet?: DeviceFleet;
  private readonly stopFollowingModels: () => void;

  constructor(
    generator: Generator,
    models: InferenceModels,
    pool: WorkerPool,
    options: GenerateStageOptions,
  ) {
    const { queue } = options;
    this.nodeId = queue.nodeId ?? hostname();
    this.prefix = queue.prefix;
    this.logger = options.logger;
    this.redis = createRedis(options.redisUrl);
    this.workerOptions = {
      redisUrl: options.redisUrl,
      prefix: queue.prefix,
      concurrency: queue.concurrency ?? Math.max(1, pool.list().length) * (options.jobsPerDevice ?? 1),
      lockDurationMs: queue.lockDurationMs,
      stalledIntervalMs: queue.stalledIntervalMs,
      maxStalledCount: queue.maxStalledCount,
      stages: ['generate'],
      logger: options.logger,
      process: async (ctx): Promise<StageResult> => {
        this.active++;
        try {
          const modelId = String(ctx.data.params['modelId'] ?? '');
          if (options.ensureLoaded && modelId && models.onVram({ modelId }).length === 0) {
            await options.ensureLoaded(modelId, ctx.signal);
          }
          const run = () =>
            generator.generate({
              params: inferenceV1.GenerationParams.fromJSON(ctx.data.params),
              signal: ctx.signal,
              deadline: ctx.deadline,
              traceparent: ctx.data.traceparent,
              onScheduled: (deviceId) => options.onUse?.(modelId, deviceId),
              onProgress: (p) => ctx.reportProgress({ step: p.step, total: p.total }),
            });
          let outcome: GenerateOutcome;
          try {
            outcome = await run();
          } catch (err) {
            // The model left every device while this job waited for its turn (evicted for another
            // job's model, or unloaded): load it back once and run again; any other failure stands.
            if (
              !options.ensureLoaded ||
              ctx.signal.aborted ||
              !modelId ||
              models.onVram({ modelId }).length > 0
            )
              throw err;
            this.logger?.info(
              { modelId, err: String(err) },
              'model left the node before the job ran: loading it back',
            );
            await options.ensureLoaded(modelId, ctx.signal);
            outcome = await run();
          }
          return {
            images: outcome.images.map((i) => ({
              path: i.path,
              sha256: i.sha256,
              width: i.width,
              height: i.height,
              format: i.format,
              seed: i.seed,
            })),
            seed: outcome.seed,
            deviceId: outcome.deviceId,
          };
        } finally {
          this.active--;
        }
      },
    };
    this.worker = new StageWorker({
      ...this.workerOptions,
      queues: ['inference', nodeQueueName('inference', this.nodeId)],
    });
    this.fleet = options.fleet;
    options.fleet?.on('change', () => void this.followCordon());
    // Affinity follows every load, unload, eviction and lost worker at once, not at the next beat.
    this.stopFollowingModels = models.onChange(() => {
      if (!this.stopped) this.announce().catch(() => undefined);
    });
    this.announcer = new NodeAnnouncer(this.redis, {
      prefix: queue.prefix,
      nodeId: this.nodeId,
      service: 'inference',
      onError: (err) => options.logger?.warn({ err: String(err) }, 'node announcement failed'),
      devices: () =>
        pool.list().map((w) => ({
          id: w.device.id,
          backend: w.device.backend ?? '',
          // A cordoned device takes no work: processing routes nothing to it.
          state: options.fleet?.isCordoned(w.device.id) ? 'cordoned' : w.supervisor.state,
          // What the worker process itself confirmed holding: a model being loaded back into a
          // restarted worker is not announced until it is there.
          residentModels: models.residentOnVram(w.device.id),
          activeJobs: w.supervisor.health().activeRequests,
        })),
    });
  }

  async start(): Promise<void> {
    await this.announcer.start();
    await this.worker.start();
    await this.followCordon();
    const every = Math.max(1_000, this.workerOptions.stalledIntervalMs ?? 30_000);
    this.adoptTimer = setInterval(() => void this.adoptOrphans(), every);
    this.adoptTimer.unref();
  }

  /**
   * Starts consuming `inference@<id>` of every node with such a queue and no live announcement;
   * stops consuming those whose node announced itself again. Errors are logged and retried on
   * the next round.
   */
  adoptOrphans(): Promise<void> {
    this.adopting ??= this.adoptRound()
      .catch((err: unknown) => this.logger?.warn({ err: String(err) }, 'adopting dead nodes’ queues failed'))
      .finally(() => (this.adopting = undefined));
    return this.adopting;
  }

  private async adoptRound(): Promise<void> {
    if (this.stopped) return;
    const alive = new Set(
      (await listNodes(this.redis, this.prefix))
        .filter((n) => n.service === 'inference')
        .map((n) => n.nodeId),
    );
    const queued = await this.nodeQueues();
    for (const nodeId of queued) {
      if (this.stopped || nodeId === this.nodeId || alive.has(nodeId) || this.adopted.has(nodeId)) continue;
      const worker = new StageWorker({ ...this.workerOptions, queues: [nodeQueueName('inference', nodeId)] });
      this.adopted.set(nodeId, worker);
      if (this.worker.isPaused) await worker.pause();
      await worker.start();
      this.logger?.info({ deadNode: nodeId }, 'consuming the queue of a dead node');
    }
    for (const [nodeId, worker] of this.adopted) {
      if (!alive.has(nodeId) && !this.stopped) continue;
      this.adopted.delete(nodeId);
      await worker.close();
      this.logger?.info({ node: nodeId }, 'node is back: no longer consuming its queue');
    }
  }

  /** Node ids with an `inference@<id>` queue in Redis (BullMQ's `<prefix>:<queue>:meta` key). */
  private async nodeQueues(): Promise<Set<string>> {
    const head = `${this.prefix}:inference@`;
    const ids = new Set<string>();
    let cursor = '0';
    do {
      const [next, keys] = await this.redis.scan(cursor, 'MATCH', `${head}*:meta`, 'COUNT', 500);
      cursor = next;
      for (const key of keys) ids.add(key.slice(head.length, -':meta'.length));
    } while (cursor !== '0');
    return ids;
  }

  /** Pauses every consumer of this node while all its devices are cordoned; resumes them after. */
  private async followCordon(): Promise<void> {
    if (!this.fleet || this.stopped) return;
    const pause = this.fleet.allCordoned();
    const consumers = [this.worker, ...this.adopted.values()];
    if (pause === this.worker.isPaused) return;
    await Promise.all(consumers.map((c) => (pause ? c.pause() : c.resume())));
    this.logger?.info(
      { paused: pause },
      pause ? 'every device cordoned: taking no jobs' : 'taking jobs again',
    );
  }

  /** Announces now (after a model load, so processing routes to this node at once). */
  announce(): Promise<void> {
    return this.announcer.beat();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopFollowingModels();
    if (this.adoptTimer) clearInterval(this.adoptTimer);
    await this.adopting;
    await Promise.all([...this.adopted.values()].map((w) => w.close()));
    this.adopted.clear();
    await this.worker.close();
    await this.announcer.stop().catch(() => undefined);
    this.redis.disconnect();
  }
}
