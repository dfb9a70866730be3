import { EventEmitter } from 'node:events';
import { DopsError } from '@dops/errors';
import { reserveWithEvictions } from '@dops/model-host';
import type { ModelEntry } from '../model-entry';
import type { ModelRegistry } from '../registry';
import type {
  DeviceResidency,
  LoadEvent,
  LoadEventKind,
  ModelHosts,
  ModelResidency,
  Reservations,
  Tier,
} from './load-types';

export interface ModelLoaderOptions {
  registry: ModelRegistry;
  hosts: ModelHosts;
  /** The memory service; without it VRAM loads are not reserved (single-model nodes, tests). */
  reservations?: Reservations;
  /** Bytes all resident models may take in RAM on this node; 0 = unbounded. Default 0. */
  ramBudgetBytes?: number;
  /** A RAM-tier model unused this long is unloaded; 0 = kept forever. Default 0. */
  keepAliveMs?: number;
  /** Bytes reserved beside the model's own for a VRAM load (activations, VAE decode). Default 0. */
  workingMemoryBytes?: number;
  /** Config root the workers build single-file checkpoints with; default: the worker's shipped configs. */
  configDir?: string;
  /** How often keep-alive is checked; default min(keepAliveMs / 2, 30 000). */
  sweepIntervalMs?: number;
  /** Reserve → evict rounds before giving up. Default 4. */
  maxEvictionRounds?: number;
  now?: () => number;
}

interface Resident extends DeviceResidency {
  modelId: string;
}

export interface ModelLoaderEvents {
  event: [LoadEvent];
}

const ZERO_TIMINGS = { readSeconds: 0, buildSeconds: 0, toDeviceSeconds: 0, totalSeconds: 0 };

/**
 * Loads models into the RAM and VRAM tiers of device workers through the model hosts, keeps the
 * book of what is resident where, bounds the RAM tier (budget, LRU, keep-alive), asks the memory
 * service before every VRAM load and carries out its eviction plans. Work on one device is serial.
 */
export class ModelLoader extends EventEmitter<ModelLoaderEvents> {
  private readonly residents = new Map<string, Resident>();
  private readonly queues = new Map<string, Promise<unknown>>();
  private readonly now: () => number;
  private readonly sweepTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: ModelLoaderOptions) {
    super();
    this.now = options.now ?? Date.now;
    const keepAlive = options.keepAliveMs ?? 0;
    if (keepAlive > 0) {
      this.sweepTimer = setInterval(
        () => void this.sweep().catch(() => undefined),
        options.sweepIntervalMs ?? Math.min(keepAlive / 2, 30_000),
      );
      this.sweepTimer.unref();
    }
  }

  /**
   * Loads the model into `tier` of the device's worker and resolves to the `loaded` event.
   * Throws NOT_FOUND (model, device), FAILED_PRECONDITION naming 'model_id' for an invalid or refused model,
   * RESOURCE_EXHAUSTED (RAM budget, or no VRAM even after evictions), or the host's error.
   */
  load(modelId: string, deviceId: string, tier: Tier, signal?: AbortSignal): Promise<LoadEvent> {
    const entry = this.loadable(modelId);
    return this.serial(deviceId, () => this.loadNow(entry, deviceId, tier, signal));
  }

  /** Starts a RAM-tier load unless the model is already on the device; false when it is. Throws like load's checks. */
  prefetch(modelId: string, deviceId: string): boolean {
    const entry = this.loadable(modelId);
    if (this.residents.has(keyOf(deviceId, modelId))) return false;
    // Failures reach watchers as a `failed` event.
    void this.serial(deviceId, () => this.loadNow(entry, deviceId, 'ram')).catch(() => undefined);
    return true;
  }

  /**
   * `vram` moves the model back to RAM; `ram` drops it. False when it was not held in that tier.
   * A model this loader did not load (a queued job's, loaded by inference) is unloaded through its host too.
   */
  unload(modelId: string, deviceId: string, tier: Tier): Promise<boolean> {
    return this.serial(deviceId, () => this.unloadNow(modelId, deviceId, tier, 'unloaded', 'requested'));
  }

  /** Where models are held now, filtered by model and device; one entry per model. */
  residency(filter: { modelId?: string; deviceId?: string } = {}): ModelResidency[] {
    const byModel = new Map<string, ModelResidency>();
    for (const r of this.residents.values()) {
      if (
        (filter.modelId && r.modelId !== filter.modelId) ||
        (filter.deviceId && r.deviceId !== filter.deviceId)
      )
        continue;
      const model = byModel.get(r.modelId) ?? {
        modelId: r.modelId,
        onDisk: this.onDisk(r.modelId),
        devices: [],
      };
      model.devices.push({
        deviceId: r.deviceId,
        tier: r.tier,
        bytes: r.bytes,
        loadedAt: r.loadedAt,
        lastUsedAt: r.lastUsedAt,
      });
      byModel.set(r.modelId, model);
    }
    if (filter.modelId && !byModel.has(filter.modelId)) {
      byModel.set(filter.modelId, {
        modelId: filter.modelId,
        onDisk: this.onDisk(filter.modelId),
        devices: [],
      });
    }
    return [...byModel.values()].sort((a, b) => (a.modelId < b.modelId ? -1 : 1));
  }

  /** Unloads RAM-tier models unused for longer than keep-alive; resolves to how many. Never rejects. */
  async sweep(): Promise<number> {
    const keepAlive = this.options.keepAliveMs ?? 0;
    if (keepAlive <= 0) return 0;
    const stale = [...this.residents.values()].filter(
      (r) => r.tier === 'ram' && this.now() - r.lastUsedAt > keepAlive,
    );
    let count = 0;
    for (const r of stale) {
      const done = await this.serial(r.deviceId, async () => {
        const current = this.residents.get(keyOf(r.deviceId, r.modelId));
        if (!current || current.tier !== 'ram' || this.now() - current.lastUsedAt <= keepAlive) return false;
        return this.unloadNow(r.modelId, r.deviceId, 'ram', 'evicted', 'keep-alive expired');
      }).catch(() => false);
      if (done) count += 1;
    }
    return count;
  }

  close(): void {
    clearInterval(this.sweepTimer);
  }

  private loadable(modelId: string): ModelEntry {
    const entry = this.options.registry.get(modelId);
    if (entry.status === 'invalid' || entry.status === 'refused') {
      const reason = entry.reason ?? 'not loadable';
      throw new DopsError('FAILED_PRECONDITION', `model '${modelId}' is ${entry.status}: ${reason}`, {
        violations: [{ field: 'model_id', description: `model is ${entry.status}: ${reason}` }],
        metadata: { model_id: modelId, status: entry.status },
      });
    }
    return entry;
  }

  private onDisk(modelId: string): boolean {
    try {
      this.options.registry.get(modelId);
      return true;
    } catch {
      return false;
    }
  }

  private async loadNow(
    entry: ModelEntry,
    deviceId: string,
    tier: Tier,
    signal?: AbortSignal,
  ): Promise<LoadEvent> {
    const started = performance.now();
    const key = keyOf(deviceId, entry.id);
    const before = this.residents.get(key);
    let reserved = false;
    try {
      if (tier === 'vram') reserved = await this.reserveVram(entry, deviceId);
      if (!before) await this.makeRamRoom(entry.sizeBytes, key);
      const result = await this.options.hosts.load(
        {
          modelId: entry.id,
          path: entry.path,
          deviceId,
          tier,
          configDir: this.options.configDir,
          sha256: entry.hashes?.sha256,
        },
        signal,
      );
      const at = this.now();
      // A VRAM model asked for RAM stays in VRAM: the worker holds both copies.
      const heldTier: Tier = tier === 'ram' && before?.tier === 'vram' ? 'vram' : tier;
      this.residents.set(key, {
        modelId: entry.id,
        deviceId,
        tier: heldTier,
        bytes: result.bytes || entry.sizeBytes,
        loadedAt: before?.loadedAt ?? at,
        lastUsedAt: at,
      });
      return this.emitEvent(
        'loaded',
        entry.id,
        deviceId,
        tier,
        result.bytes || entry.sizeBytes,
        result.source,
        '',
        {
          ...result.timings,
          totalSeconds: (performance.now() - started) / 1000,
        },
      );
    } catch (err) {
      if (reserved && before?.tier !== 'vram') await this.release(deviceId, entry.id);
      this.emitEvent('failed', entry.id, deviceId, tier, 0, '', (err as Error).message, {
        ...ZERO_TIMINGS,
        totalSeconds: (performance.now() - started) / 1000,
      });
      throw err;
    }
  }

  /** Reserve → carry out the eviction plan → reserve again; true once granted (false without a memory service). */
  private async reserveVram(entry: ModelEntry, deviceId: string): Promise<boolean> {
    const reservations = this.options.reservations;
    if (!reservations) return false;
    const bytes = entry.sizeBytes + (this.options.workingMemoryBytes ?? 0);
    await reserveWithEvictions(
      reservations,
      { deviceId, bytes, modelId: entry.id, purpose: 'model-load' },
      this.options.maxEvictionRounds ?? 4,
      async (victim) => {
        const unloaded = await this.unloadNow(
          victim,
          deviceId,
          'vram',
          'evicted',
          `memory service eviction plan for ${entry.id}`,
        );
        // A reservation we did not know about (another service's load): free it as planned.
        if (!unloaded) {
          await this.options.hosts.unload({ modelId: victim, deviceId, tier: 'vram' }).catch(() => false);
          await this.release(deviceId, victim);
        }
      },
    );
    return true;
  }

  /** Unloads RAM-tier models, least recently used first, until `bytes` more fit the RAM budget. */
  private async makeRamRoom(bytes: number, exceptKey: string): Promise<void> {
    const budget = this.options.ramBudgetBytes ?? 0;
    if (budget <= 0) return;
    if (bytes > budget)
      throw new DopsError(
        'RESOURCE_EXHAUSTED',
        `model of ${bytes} bytes exceeds the RAM budget of ${budget} bytes`,
      );
    const used = () => [...this.residents.values()].reduce((sum, r) => sum + r.bytes, 0);
    const candidates = [...this.residents.entries()]
      .filter(([key, r]) => key !== exceptKey && r.tier === 'ram')
      .sort(([, a], [, b]) => a.lastUsedAt - b.lastUsedAt)
      .map(([, r]) => r);
    for (const victim of candidates) {
      if (used() + bytes <= budget) return;
      await this.unloadNow(victim.modelId, victim.deviceId, 'ram', 'evicted', 'RAM budget');
    }
    if (used() + bytes > budget) {
      throw new DopsError(
        'RESOURCE_EXHAUSTED',
        `RAM budget of ${budget} bytes is held by models in VRAM; unload one first`,
        { retryable: true },
      );
    }
  }

  private async unloadNow(
    modelId: string,
    deviceId: string,
    tier: Tier,
    kind: LoadEventKind,
    reason: string,
  ): Promise<boolean> {
    const key = keyOf(deviceId, modelId);
    const resident = this.residents.get(key);
    const started = performance.now();
    if (!resident) {
      // Not loaded through this service (inference loads a queued job's model itself): the host
      // knows whether it holds it, and the model's VRAM reservation goes with it.
      if (kind !== 'unloaded') return false;
      const unloaded = await this.options.hosts.unload({ modelId, deviceId, tier });
      if (unloaded) {
        await this.release(deviceId, modelId);
        this.emitEvent(kind, modelId, deviceId, tier, 0, '', reason, {
          ...ZERO_TIMINGS,
          totalSeconds: (performance.now() - started) / 1000,
        });
      }
      return unloaded;
    }
    if (tier === 'vram' && resident.tier !== 'vram') return false;
    await this.options.hosts.unload({ modelId, deviceId, tier });
    if (resident.tier === 'vram') await this.release(deviceId, modelId);
    if (tier === 'vram') resident.tier = 'ram';
    else this.residents.delete(key);
    this.emitEvent(kind, modelId, deviceId, tier, resident.bytes, '', reason, {
      ...ZERO_TIMINGS,
      totalSeconds: (performance.now() - started) / 1000,
    });
    return true;
  }

  private async release(deviceId: string, modelId: string): Promise<void> {
    await this.options.reservations?.release({ deviceId, modelId }).catch(() => undefined);
  }

  private emitEvent(
    kind: LoadEventKind,
    modelId: string,
    deviceId: string,
    tier: Tier,
    bytes: number,
    source: string,
    reason: string,
    timings: LoadEvent['timings'],
  ): LoadEvent {
    const event: LoadEvent = {
      kind,
      modelId,
      deviceId,
      tier,
      bytes,
      timings,
      source,
      reason,
      at: this.now(),
    };
    this.emit('event', event);
    return event;
  }

  private serial<T>(deviceId: string, work: () => Promise<T>): Promise<T> {
    const previous = this.queues.get(deviceId) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(work);
    const tail = next.catch(() => undefined);
    this.queues.set(deviceId, tail);
    void tail.then(() => {
      if (this.queues.get(deviceId) === tail) this.queues.delete(deviceId);
    });
    return next;
  }
}

function keyOf(deviceId: string, modelId: string): string {
  return `${deviceId}\0${modelId}`;
}
