import { hostname } from 'node:os';
import { inferenceV1 } from '@dops/proto';
import {
  NodeAnnouncer,
  StageWorker,
  createRedis,
  nodeQueueName,
  type QueueConfig,
  type Redis,
  type StageResult,
} from '@dops/queue';
import type { WorkerPool } from '@dops/worker-pool';
import type { Generator } from '../generator';
import type { InferenceModels } from '../inference-models';

export interface GenerateStageOptions {
  redisUrl: string;
  /**
   * Brings a model this node does not hold onto a device's VRAM (through the model service, which
   * reserves memory and plans evictions first). Unset: such a job fails FAILED_PRECONDITION.
   */
  ensureLoaded?: (modelId: string, signal: AbortSignal) => Promise<void>;
  queue: QueueConfig;
  logger?: { info(o: object, m?: string): void; warn(o: object, m?: string): void };
}

/**
 * The inference stage consumer: a StageWorker on `inference` and `inference@<nodeId>` that runs
 * `generate` stage jobs on the Generator (cancel → the worker stops within a step; the job's
 * deadline becomes the worker deadline), reports step progress, and returns `{images}`; plus
 * this node's announcement (devices, VRAM-resident models, active jobs). Concurrency defaults
 * to the number of devices.
 */
export class GenerateStage {
  private readonly worker: StageWorker<Record<string, unknown>>;
  private readonly announcer: NodeAnnouncer;
  private readonly redis: Redis;
  private active = 0;
  readonly nodeId: string;

  constructor(
    generator: Generator,
    models: InferenceModels,
    pool: WorkerPool,
    options: GenerateStageOptions,
  ) {
    const { queue } = options;
    this.nodeId = queue.nodeId ?? hostname();
    this.redis = createRedis(options.redisUrl);
    this.worker = new StageWorker({
      queues: ['inference', nodeQueueName('inference', this.nodeId)],
      redisUrl: options.redisUrl,
      prefix: queue.prefix,
      concurrency: queue.concurrency ?? Math.max(1, pool.list().length),
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
            await this.announce().catch(() => undefined);
          }
          const outcome = await generator.generate({
            params: inferenceV1.GenerationParams.fromJSON(ctx.data.params),
            signal: ctx.signal,
            deadline: ctx.deadline,
            traceparent: ctx.data.traceparent,
            onProgress: (p) => ctx.reportProgress({ step: p.step, total: p.total }),
          });
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
          state: w.supervisor.state,
          residentModels: models.onVram({ deviceId: w.device.id }).map((m) => m.modelId),
          activeJobs: w.supervisor.health().activeRequests,
        })),
    });
  }

  async start(): Promise<void> {
    await this.announcer.start();
    await this.worker.start();
  }

  /** Announces now (after a model load, so processing routes to this node at once). */
  announce(): Promise<void> {
    return this.announcer.beat();
  }

  async stop(): Promise<void> {
    await this.worker.close();
    await this.announcer.stop().catch(() => undefined);
    this.redis.disconnect();
  }
}
