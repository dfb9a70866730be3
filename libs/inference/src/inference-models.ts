import { DopsError } from '@dops/errors';
import { ModelHost, type HostLoadOptions, type HostLoadResult, type HostTier } from '@dops/model-host';
import type { PooledWorker, WorkerPool } from '@dops/worker-pool';
import { parseDeviceId } from '@dops/worker-pool';
import type { SupervisorLogger, WorkerState } from '@dops/worker-supervisor';
import { DeviceLane, type LaneOptions } from '@dops/worker-pool';
import type { WorkerCapabilities } from './worker-capabilities';

export interface InferenceModelsOptions {
  /** Dynamic batching and limits of each device's lane; default no batching. */
  lane?: Partial<LaneOptions>;
  /** How long an unload waits for the generation running on its device before FAILED_PRECONDITION; default 60 000 ms. */
  unloadWaitMs?: number;
}

/** A model this service loaded into one device's worker. */
export interface HeldModel {
  modelId: string;
  deviceId: string;
  path: string;
  tier: HostTier;
  /** Set while the model is loaded again into a restarted worker. */
  reloading?: Promise<void>;
}

interface Entry extends HeldModel {
  /** What a reload into a restarted worker passes again (the file's sha256 keeps its images named by hash). */
  load: Pick<HostLoadOptions, 'configDir' | 'sha256'>;
  /** Settles `reloading`; set from the moment the worker is lost until the model is back (or given up). */
  settle?: () => void;
  /** The device's current worker process answered this load; false from the moment that worker is lost. */
  confirmed: boolean;
}

// A worker in one of these states has lost (or is about to lose) every model it held.
const LOSING_STATES: ReadonlySet<WorkerState> = new Set(['crashed', 'starting', 'stopped', 'failed']);

const keyOf = (deviceId: string, modelId: string) => `${deviceId}\u0000${modelId}`;

/**
 * The ModelHost of the inference service that also remembers what it loaded where: model
 * affinity for generation, capabilities per loaded model (cached), and models loaded again
 * into a worker that was restarted (crash, cancel that did not stop, reset). Serve it with
 * `modelHostService` so every load goes through it.
 */
export class InferenceModels extends ModelHost {
  private readonly held = new Map<string, Entry>();
  private readonly capabilityCache = new Map<string, Promise<WorkerCapabilities>>();
  private readonly lanes = new Map<string, DeviceLane>();
  private readonly laneOptions: LaneOptions;
  private readonly unloadWaitMs: number;
  private readonly changeListeners = new Set<() => void>();

  constructor(
    private readonly workers: WorkerPool,
    private readonly logger?: SupervisorLogger,
    options: InferenceModelsOptions = {},
  ) {
    super(workers);
    this.laneOptions = { maxBatch: 1, batchWaitMs: 0, maxRequestMs: 600_000, ...options.lane };
    this.unloadWaitMs = options.unloadWaitMs ?? 60_000;
    workers.on('state', (deviceId, state) => {
      if (LOSING_STATES.has(state)) this.lost(deviceId, state);
    });
    workers.on('probed', (deviceId) => this.reloadInto(deviceId));
  }

  /**
   * The only sender of work to the device's worker (generations, loads, unloads): see DeviceLane.
   * Throws NOT_FOUND for an unknown device.
   */
  lane(deviceId: string): DeviceLane {
    this.workers.get(deviceId);
    let lane = this.lanes.get(deviceId);
    if (!lane) {
      lane = new DeviceLane(() => this.workers.get(deviceId).supervisor, {
        ...this.laneOptions,
        // No generation reaches a restarted worker before the models it held are back.
        ready: () => this.reloaded(deviceId),
      });
      this.lanes.set(deviceId, lane);
    }
    return lane;
  }

  /**
   * ModelHost.load between the device's generations (never queued inside the worker behind
   * one), remembered for affinity; a VRAM load also fetches the model's capabilities.
   */
  override load(
    modelId: string,
    path: string,
    deviceId: string,
    tier: HostTier,
    options: HostLoadOptions = {},
  ): Promise<HostLoadResult> {
    return this.loadOn(false, modelId, path, deviceId, tier, options);
  }

  /** A promise while models of the device's restarted worker are being loaded again; else undefined. */
  private reloaded(deviceId: string): Promise<unknown> | undefined {
    const pending = [...this.held.values()].filter((e) => e.deviceId === deviceId && e.settle && e.reloading);
    return pending.length ? Promise.all(pending.map((e) => e.reloading)) : undefined;
  }

  /** The load between generations; `urgent` (loading back what a restarted worker held) before every waiting request. */
  private async loadOn(
    urgent: boolean,
    modelId: string,
    path: string,
    deviceId: string,
    tier: HostTier,
    options: HostLoadOptions,
  ): Promise<HostLoadResult> {
    const result = await this.lane(deviceId).exclusive(
      () => super.load(modelId, path, deviceId, tier, options),
      {
        urgent,
      },
    );
    const key = keyOf(deviceId, modelId);
    this.capabilityCache.delete(key);
    const previous = this.held.get(key);
    this.held.set(key, {
      modelId,
      deviceId,
      path,
      tier: result.tier,
      confirmed: true,
      // The worker keeps an earlier load's hash of the unchanged file; so does the book.
      load: {
        configDir: options.configDir,
        sha256: options.sha256 ?? (previous?.path === path ? previous.load.sha256 : undefined),
      },
    });
    this.changed();
    // Warm the cache now so the first generation validates against the model without waiting.
    if (result.tier === 'vram') this.capabilities(deviceId, modelId).catch(() => undefined);
    return result;
  }

  /**
   * ModelHost.unload after the generation running on the device (FAILED_PRECONDITION when it
   * still runs after `unloadWaitMs`), forgotten for affinity.
   */
  override async unload(
    modelId: string,
    deviceId: string,
    tier: HostTier,
    options: { traceparent?: string } = {},
  ): Promise<boolean> {
    // Between generations: an unload waits (bounded) for the running one, never kills it.
    const unloaded = await this.lane(deviceId).exclusive(
      () => super.unload(modelId, deviceId, tier, options),
      {
        waitMs: this.unloadWaitMs,
        what: `unloading model '${modelId}'`,
      },
    );
    const key = keyOf(deviceId, modelId);
    this.capabilityCache.delete(key);
    const entry = this.held.get(key);
    if (entry && tier === 'ram') this.held.delete(key);
    else if (entry) entry.tier = 'ram';
    this.changed();
    return unloaded;
  }

  /**
   * The models the device's current worker holds on VRAM, as its own replies confirmed them: a
   * model being loaded again into a restarted worker is not there yet. What the node announces.
   */
  residentOnVram(deviceId: string): string[] {
    return [...this.held.values()]
      .filter((e) => e.deviceId === deviceId && e.tier === 'vram' && e.confirmed)
      .map((e) => e.modelId)
      .sort();
  }

  /** The tier and load options the device's worker holds the model with; undefined when it holds none. */
  heldOn(modelId: string, deviceId: string): { tier: HostTier; path: string; sha256?: string } | undefined {
    const entry = this.held.get(keyOf(deviceId, modelId));
    return entry && { tier: entry.tier, path: entry.path, sha256: entry.load.sha256 };
  }

  /** Calls `listener` after every change of what a worker holds (load, unload, lost worker, reload). */
  onChange(listener: () => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  private changed(): void {
    for (const listener of this.changeListeners) listener();
  }

  /** Models on the VRAM tier, optionally of one model and/or one device. */
  onVram(filter: { modelId?: string; deviceId?: string } = {}): HeldModel[] {
    return [...this.held.values()]
      .filter(
        (e) =>
          e.tier === 'vram' &&
          (!filter.modelId || e.modelId === filter.modelId) &&
          (!filter.deviceId || e.deviceId === filter.deviceId),
      )
      .map(({ load: _load, settle: _settle, confirmed: _confirmed, ...held }) => held);
  }

  /**
   * The worker to run `modelId` on: `deviceId` when given (INVALID_ARGUMENT / NOT_FOUND for a bad
   * one), else the ready device holding the model on VRAM with the fewest running requests.
   * Throws FAILED_PRECONDITION naming `params.model_id` when no device holds it on VRAM.
   */
  async workerFor(modelId: string, deviceId?: string): Promise<PooledWorker> {
    const requested = deviceId ? this.workers.get(parseDeviceId(deviceId)) : undefined;
    const holding = this.onVram({ modelId, deviceId: requested?.device.id });
    if (holding.length === 0) {
      const where = requested ? `device ${requested.device.id}` : 'any device of this node';
      const onRam = [...this.held.values()].some(
        (e) => e.modelId === modelId && (!requested || e.deviceId === requested.device.id),
      );
      const reason = onRam
        ? `is only on the RAM tier of ${where}; load it to VRAM first`
        : `is not loaded on ${where}; load it first`;
      throw new DopsError('FAILED_PRECONDITION', `params.model_id: model '${modelId}' ${reason}`, {
        violations: [{ field: 'params.model_id', description: reason }],
      });
    }
    const candidates = holding
      .map((h) => ({ held: h, worker: this.workers.get(h.deviceId) }))
      .sort((a, b) => rank(a.worker) - rank(b.worker));
    const chosen = candidates[0]!;
    if (chosen.held.reloading) await chosen.held.reloading;
    return chosen.worker;
  }

  /**
   * `inference.capabilities` of a model on a device, cached until the model or the worker
   * changes; shared by concurrent callers, so it takes no signal. Rejects with the worker's error.
   */
  capabilities(
    deviceId: string,
    modelId: string,
    options: { traceparent?: string } = {},
  ): Promise<WorkerCapabilities> {
    const key = keyOf(deviceId, modelId);
    let cached = this.capabilityCache.get(key);
    if (!cached) {
      const { supervisor } = this.workers.get(deviceId);
      cached = supervisor.request<WorkerCapabilities>('inference.capabilities', { model: modelId }, options);
      this.capabilityCache.set(key, cached);
      cached.catch(() => {
        if (this.capabilityCache.get(key) === cached) this.capabilityCache.delete(key);
      });
    }
    return cached;
  }

  /**
   * The device's worker is gone or restarting: requests for its models wait (in `workerFor`)
   * until they are loaded again, so none reaches the new worker before its model does.
   */
  private lost(deviceId: string, state: WorkerState): void {
    for (const key of this.capabilityCache.keys())
      if (key.startsWith(`${deviceId}\u0000`)) this.capabilityCache.delete(key);
    for (const entry of this.held.values()) {
      if (entry.deviceId !== deviceId) continue;
      entry.confirmed = false;
      // A crash-looping (failed) or stopped worker comes back only on reset: let requests fail UNAVAILABLE now.
      if (state === 'failed' || state === 'stopped') {
        entry.settle?.();
        continue;
      }
      if (!entry.settle) entry.reloading = new Promise<void>((settle) => (entry.settle = settle));
    }
    this.changed();
  }

  /** A restarted worker holds nothing: load again what it held, in the tiers it held them. */
  private reloadInto(deviceId: string): void {
    for (const entry of [...this.held.values()].filter((e) => e.deviceId === deviceId)) {
      const done = () => {
        entry.settle?.();
        entry.settle = undefined;
      };
      this.loadOn(true, entry.modelId, entry.path, deviceId, entry.tier, entry.load).then(
        done,
        (err: unknown) => {
          this.held.delete(keyOf(deviceId, entry.modelId));
          this.changed();
          this.logger?.warn(
            { modelId: entry.modelId, deviceId, err: String(err) },
            'reloading a model into a restarted worker failed',
          );
          done();
        },
      );
    }
  }
}

/** Ready workers first, then the least busy. */
function rank({ supervisor }: PooledWorker): number {
  return (supervisor.state === 'ready' ? 0 : 1_000_000) + supervisor.health().activeRequests;
}
