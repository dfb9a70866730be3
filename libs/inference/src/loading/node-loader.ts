import { DopsError } from '@dops/errors';
import { loadPaths, reserveWithEvictions, type HostRoots, type Reservations } from '@dops/model-host';
import type { DeviceFleet, PooledWorker, WorkerPool } from '@dops/worker-pool';
import type { InferenceModels } from '../inference-models';
import type { ModelIdentities, ModelIdentity } from './model-identities';

export interface NodeLoaderOptions extends HostRoots {
  /** The model registry (identity from the header; the sha256 only once hashed). */
  identities: ModelIdentities;
  /** The memory service; without it VRAM loads are not reserved (single-model nodes, tests). */
  reservations?: Reservations;
  /** Bytes reserved beside the model's own for a VRAM load (activations, VAE decode). Default 0. */
  workingMemoryBytes?: number;
  /** Reserve → evict rounds before RESOURCE_EXHAUSTED. Default 4. */
  maxEvictionRounds?: number;
  /**
   * How often the registry is asked again for the sha256 of a model loaded before its hash was
   * known; once it is, the worker gets it and names the model by hash in later images. 0 = never.
   * Default 5 000 ms.
   */
  hashPollMs?: number;
  /** A model evicted to the RAM tier and not loaded again for this long is dropped from RAM; 0 = kept. Default 600 000 ms. */
  ramKeepAliveMs?: number;
  /** Least time between two Touch calls for one model on one device. Default 5 000 ms. */
  touchEveryMs?: number;
  /** Cordoned devices take no cold load. */
  fleet?: DeviceFleet;
  logger?: { info(o: object, m?: string): void; warn(o: object, m?: string): void };
}

/**
 * Cold loads decided on this node: for a job whose model no device holds on VRAM, it asks the
 * model registry for the file's identity (header only — hashing never delays a load), the memory
 * service for the VRAM reservation, carries out an eviction plan through each device's lane
 * (unloads between generations) and loads through the lane. No call leaves this service except
 * those two questions. One load per model at a time: concurrent jobs for it share it.
 */
export class NodeLoader {
  private readonly loading = new Map<string, Promise<string>>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  /** When each model's reservation was last touched, by device and model. */
  private readonly touchedAt = new Map<string, number>();
  private closed = false;

  constructor(
    private readonly models: InferenceModels,
    private readonly pool: WorkerPool,
    private readonly options: NodeLoaderOptions,
  ) {}

  /**
   * Resolves to a device whose worker holds `modelId` on VRAM, loading it first when none does.
   * Throws NOT_FOUND (unknown model), FAILED_PRECONDITION naming `params.model_id` (invalid or
   * refused model, or a path outside this node's model roots), RESOURCE_EXHAUSTED (no VRAM after
   * evictions), UNAVAILABLE (no schedulable device, registry or memory service down), CANCELLED
   * when `signal` aborts (the shared load goes on for other callers), or the worker's error.
   */
  async ensureOnVram(modelId: string, signal?: AbortSignal): Promise<string> {
    const holding = this.models.onVram({ modelId });
    if (holding.length > 0) return holding[0]!.deviceId;
    let load = this.loading.get(modelId);
    if (!load) {
      load = this.coldLoad(modelId).finally(() => this.loading.delete(modelId));
      this.loading.set(modelId, load);
    }
    return signal ? abortable(load, signal) : load;
  }

  /**
   * A generation of `modelId` starts on the device: its reservation counts as used now, so
   * eviction plans take the models used least recently (not loaded earliest). At most one
   * Touch per model and device every `touchEveryMs`. Never throws; a failed touch is logged.
   */
  used(modelId: string, deviceId: string): void {
    const { reservations } = this.options;
    if (!reservations) return;
    const key = `${deviceId}\0${modelId}`;
    const now = Date.now();
    if (now - (this.touchedAt.get(key) ?? -Infinity) < (this.options.touchEveryMs ?? 5_000)) return;
    this.touchedAt.set(key, now);
    reservations.touch({ deviceId, modelId }).catch((err: unknown) => {
      this.options.logger?.warn({ modelId, deviceId, err: String(err) }, 'touching a reservation failed');
    });
  }

  /** Stops the hash and keep-alive timers and closes the identities and reservations clients it was given. */
  close(): void {
    this.closed = true;
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    this.options.identities.close();
    this.options.reservations?.close();
  }

  private async coldLoad(modelId: string): Promise<string> {
    const identity = await this.options.identities.identify(modelId);
    if (identity.status === 'invalid' || identity.status === 'refused') {
      throw modelIdUnusable(`model is ${identity.status}: ${identity.reason || 'not loadable'}`);
    }
    const { path, configDir } = this.confined(identity);
    const deviceId = this.chooseDevice(modelId).device.id;
    const fresh = await this.reserve(identity, deviceId);
    this.cancelTimer('ram', modelId, deviceId);
    try {
      await this.models.load(modelId, path, deviceId, 'vram', { configDir, sha256: identity.sha256 });
    } catch (err) {
      if (fresh) await this.release(deviceId, modelId);
      throw err;
    }
    this.options.logger?.info(
      { modelId, deviceId, hashed: identity.sha256 !== undefined },
      'model loaded for a queued job',
    );
    if (!this.models.heldOn(modelId, deviceId)?.sha256) this.stampWhenHashed(modelId, deviceId);
    return deviceId;
  }

  /** The registry's path, confined to this node's model roots (a registry elsewhere is not trusted blindly). */
  private confined(identity: ModelIdentity): { path: string; configDir?: string } {
    try {
      return loadPaths(identity.path, '', this.options);
    } catch (err) {
      throw modelIdUnusable(`the model's file is not loadable here: ${(err as Error).message}`, err);
    }
  }

  /**
   * A schedulable device: ready first, then one holding the model on its RAM tier (a tenth of a
   * disk load), then the least busy, then the fewest models on VRAM. Throws UNAVAILABLE.
   */
  private chooseDevice(modelId: string): PooledWorker {
    const candidates = this.pool.list().filter((w) => !this.options.fleet?.isCordoned(w.device.id));
    if (candidates.length === 0)
      throw DopsError.unavailable('no device of this node takes work (every one is cordoned)');
    const rank = (w: PooledWorker) =>
      (w.supervisor.state === 'ready' ? 0 : 1_000_000) +
      (this.models.heldOn(modelId, w.device.id)?.tier === 'ram' ? 0 : 100_000) +
      w.supervisor.health().activeRequests * 1_000 +
      this.models.residentOnVram(w.device.id).length;
    return [...candidates].sort((a, b) => rank(a) - rank(b))[0]!;
  }

  /**
   * Reserve → carry out the eviction plan through the lane → reserve again. Resolves true once
   * granted, false without a memory service. Throws RESOURCE_EXHAUSTED after the last round.
   */
  private async reserve(identity: ModelIdentity, deviceId: string): Promise<boolean> {
    const { reservations } = this.options;
    if (!reservations) return false;
    const bytes = identity.sizeBytes + (this.options.workingMemoryBytes ?? 0);
    await reserveWithEvictions(
      reservations,
      { deviceId, bytes, modelId: identity.id, purpose: 'model-load' },
      this.options.maxEvictionRounds ?? 4,
      (victim) => this.evict(victim, deviceId, identity.id),
    );
    return true;
  }

  /** Moves a planned victim to the RAM tier between generations and frees its reservation. */
  private async evict(victim: string, deviceId: string, forModel: string): Promise<void> {
    if (this.models.heldOn(victim, deviceId)?.tier === 'vram') {
      await this.models.unload(victim, deviceId, 'vram');
      this.options.logger?.info({ modelId: victim, deviceId, for: forModel }, 'model evicted to RAM');
      this.dropFromRamLater(victim, deviceId);
    }
    // Released even when this worker did not hold it: the plan named a reservation nobody backs.
    await this.release(deviceId, victim);
  }

  private dropFromRamLater(modelId: string, deviceId: string): void {
    const keepAlive = this.options.ramKeepAliveMs ?? 600_000;
    if (keepAlive <= 0 || this.closed) return;
    this.schedule('ram', modelId, deviceId, keepAlive, async () => {
      if (this.models.heldOn(modelId, deviceId)?.tier !== 'ram') return;
      await this.models.unload(modelId, deviceId, 'ram');
      this.options.logger?.info({ modelId, deviceId }, 'RAM-tier keep-alive expired: model dropped');
    });
  }

  /**
   * Asks the registry every hashPollMs until it has the file's sha256, then passes it to the
   * worker (a load of a model already there: no read, images from then on carry the hash).
   * Stops when the model leaves the device.
   */
  private stampWhenHashed(modelId: string, deviceId: string): void {
    const every = this.options.hashPollMs ?? 5_000;
    if (every <= 0 || this.closed) return;
    this.schedule('hash', modelId, deviceId, every, async () => {
      const held = this.models.heldOn(modelId, deviceId);
      if (!held || held.sha256) return;
      const identity = await this.options.identities.identify(modelId).catch(() => undefined);
      if (!identity?.sha256) return this.stampWhenHashed(modelId, deviceId);
      const { path, configDir } = this.confined(identity);
      if (path !== held.path) return; // another file now: its next cold load takes the new hash
      await this.models.load(modelId, path, deviceId, held.tier, { configDir, sha256: identity.sha256 });
      this.options.logger?.info({ modelId, deviceId }, 'model hash passed to the worker');
    });
  }

  private schedule(
    kind: string,
    modelId: string,
    deviceId: string,
    ms: number,
    work: () => Promise<void>,
  ): void {
    const key = `${kind}\0${deviceId}\0${modelId}`;
    clearTimeout(this.timers.get(key));
    const timer = setTimeout(() => {
      this.timers.delete(key);
      work().catch((err: unknown) =>
        this.options.logger?.warn({ modelId, deviceId, err: String(err) }, `${kind} follow-up failed`),
      );
    }, ms);
    timer.unref();
    this.timers.set(key, timer);
  }

  private cancelTimer(kind: string, modelId: string, deviceId: string): void {
    const key = `${kind}\0${deviceId}\0${modelId}`;
    clearTimeout(this.timers.get(key));
    this.timers.delete(key);
  }

  private async release(deviceId: string, modelId: string): Promise<void> {
    await this.options.reservations?.release({ deviceId, modelId }).catch((err: unknown) => {
      this.options.logger?.warn({ modelId, deviceId, err: String(err) }, 'releasing a reservation failed');
    });
  }
}

/** `promise`, or CANCELLED as soon as `signal` aborts (the promise itself runs on). */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new DopsError('CANCELLED', 'cancelled while the model loaded'));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new DopsError('CANCELLED', 'cancelled while the model loaded'));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/** FAILED_PRECONDITION on `params.model_id`: the job's model cannot be loaded here. */
function modelIdUnusable(reason: string, cause?: unknown): DopsError {
  return new DopsError('FAILED_PRECONDITION', `params.model_id: ${reason}`, {
    violations: [{ field: 'params.model_id', description: reason }],
    ...(cause === undefined ? {} : { cause }),
  });
}
