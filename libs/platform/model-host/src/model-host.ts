import { isAbsolute } from 'node:path';
import { DopsError } from '@dops/errors';
import type { WorkerPool } from '@dops/worker-pool';
import type { ProgressParams } from '@dops/worker-supervisor';
import { processMetrics } from '@dops/metrics';

/** Where a loaded model lives in the worker: `ram` (pinned where the backend allows) or `vram`. */
export type HostTier = 'ram' | 'vram';

export interface HostLoadOptions {
  /** Config root for single-file checkpoints; default the worker's shipped configs. */
  configDir?: string;
  /**
   * The registry's sha256 of the file (64 hex digits), which the worker stamps into the images
   * it generates with the model; default none (the worker does not hash a checkpoint itself).
   */
  sha256?: string;
  signal?: AbortSignal;
  traceparent?: string;
  /** Bounds the worker request; default the supervisor's requestTimeoutMs. */
  timeoutMs?: number;
  onProgress?: (progress: ProgressParams) => void;
}

/** `model.load`'s result, as the worker sends it. */
export interface HostLoadResult {
  modelId: string;
  tier: HostTier;
  bytes: number;
  /** 'disk', 'ram' (RAM-tier hit) or 'device' (already there). */
  source: string;
  timings: { readS: number; buildS: number; toDeviceS: number };
}

export interface ResidentOnHost {
  modelId: string;
  deviceId: string;
  tier: HostTier;
  bytes: number;
  path: string;
}

/**
 * Models held by the workers of a WorkerPool, one worker per device: the piece every
 * worker-hosting service embeds. Paths are confined to the host's model roots at its edge
 * (`modelHostService`); here they need only be absolute. Whether pickle may load is the worker's
 * node setting (DOPS_ALLOW_UNSAFE_PICKLE), never part of a load.
 */
export class ModelHost {
  constructor(private readonly pool: WorkerPool) {}

  /**
   * Loads `path` as `modelId` into the tier of the device's worker. Throws INVALID_ARGUMENT naming
   * `model_id`, `path`, `tier` or `sha256`; NOT_FOUND for an unknown device; the worker's error otherwise.
   */
  async load(
    modelId: string,
    path: string,
    deviceId: string,
    tier: HostTier,
    options: HostLoadOptions = {},
  ): Promise<HostLoadResult> {
    requireModelId(modelId);
    if (!path) throw DopsError.invalidArgument('path', 'is required');
    if (!isAbsolute(path)) throw DopsError.invalidArgument('path', 'must be absolute');
    requireTier(tier);
    if (options.sha256 && !SHA256_HEX.test(options.sha256))
      throw DopsError.invalidArgument('sha256', 'must be 64 hex digits');
    const { supervisor } = this.pool.get(deviceId);
    const params: Record<string, unknown> = { modelId, path, tier };
    if (options.configDir) params.configDir = options.configDir;
    if (options.sha256) params.sha256 = options.sha256.toLowerCase();
    const started = performance.now();
    const metrics = processMetrics();
    try {
      const result = await supervisor.request<HostLoadResult>('model.load', params, {
        signal: options.signal,
        traceparent: options.traceparent,
        timeoutMs: options.timeoutMs,
        onProgress: options.onProgress,
      });
      metrics.modelLoads.inc({ source: result.source, outcome: 'loaded' });
      metrics.modelLoadSeconds.observe({ source: result.source }, (performance.now() - started) / 1000);
      return result;
    } catch (err) {
      metrics.modelLoads.inc({ source: 'unknown', outcome: 'failed' });
      throw err;
    }
  }

  /** `vram` keeps the RAM copy; `ram` drops both. False when not held. Throws INVALID_ARGUMENT, NOT_FOUND (device). */
  async unload(
    modelId: string,
    deviceId: string,
    tier: HostTier,
    options: { traceparent?: string } = {},
  ): Promise<boolean> {
    requireModelId(modelId);
    requireTier(tier);
    const { supervisor } = this.pool.get(deviceId);
    const result = await supervisor.request<{ unloaded: boolean }>(
      'model.unload',
      { modelId, tier },
      { traceparent: options.traceparent },
    );
    return result.unloaded;
  }

  /** What the workers hold, every device or one (NOT_FOUND for an unknown device). */
  async resident(deviceId?: string): Promise<ResidentOnHost[]> {
    const workers = deviceId ? [this.pool.get(deviceId)] : this.pool.list();
    const lists = await Promise.all(
      workers.map(async ({ device, supervisor }) => {
        const result = await supervisor.request<{ models: Omit<ResidentOnHost, 'deviceId'>[] }>(
          'model.resident',
          {},
        );
        return result.models.map((m) => ({ ...m, deviceId: device.id }));
      }),
    );
    return lists.flat();
  }
}

const SHA256_HEX = /^[0-9a-fA-F]{64}$/;

function requireModelId(modelId: string): void {
  if (!modelId) throw DopsError.invalidArgument('model_id', 'is required');
  if (modelId.length > 200) throw DopsError.invalidArgument('model_id', 'must be at most 200 characters');
}

function requireTier(tier: string): void {
  if (tier !== 'ram' && tier !== 'vram') throw DopsError.invalidArgument('tier', 'must be ram or vram');
}
