import type { WorkerPool } from '../worker-pool';
import {
  DEFAULT_THRESHOLDS,
  pressureOf,
  validateThresholds,
  type PressureThresholds,
} from './memory-pressure';
import {
  watchSnapshots,
  type DeviceMemory,
  type MemoryCleanup,
  type MemorySnapshot,
  type MemorySource,
  type WorkerMemory,
} from './memory-snapshot';

/** `memory.stats` reply of one worker (docs/worker-protocol.md). */
interface WorkerMemoryStats {
  system: { totalBytes: number; availableBytes: number };
  process: { pid: number; rssBytes: number };
  devices: {
    index: number;
    id: string;
    totalBytes: number;
    usedBytes: number;
    freeBytes: number;
    processUsedBytes: number;
    source: string;
  }[];
}

/** `memory.cleanup` reply of one worker. */
interface WorkerCleanup {
  freedBytes: number;
  rssBeforeBytes: number;
  rssAfterBytes: number;
}

export interface PoolMemoryMonitorOptions {
  /** Default 85 % / 95 %. */
  thresholds?: PressureThresholds;
  /** Per-worker request timeout; default 10 000 ms. */
  requestTimeoutMs?: number;
}

/**
 * The memory of one service's own workers, read by the workers that hold the devices: CUDA/ROCm
 * through torch.cuda.mem_get_info, DirectML through DXGI + PDH, CPU from the OS. Every worker is
 * labelled with `service`, the name of the service that owns the pool.
 */
export class PoolMemoryMonitor implements MemorySource {
  private readonly thresholds: PressureThresholds;
  private readonly timeoutMs: number;

  /** Throws INVALID_ARGUMENT for bad thresholds. */
  constructor(
    private readonly pool: WorkerPool,
    readonly service: string,
    options: PoolMemoryMonitorOptions = {},
  ) {
    this.thresholds = validateThresholds(options.thresholds ?? DEFAULT_THRESHOLDS);
    this.timeoutMs = options.requestTimeoutMs ?? 10_000;
  }

  /** One snapshot across every device's worker; rejects UNAVAILABLE when a worker is down. */
  async snapshot(signal?: AbortSignal): Promise<MemorySnapshot> {
    const entries = this.pool.list();
    const stats = await Promise.all(
      entries.map((w) =>
        w.supervisor.request<WorkerMemoryStats>('memory.stats', {}, { timeoutMs: this.timeoutMs, signal }),
      ),
    );
    const workers: WorkerMemory[] = [];
    const devices: DeviceMemory[] = [];
    entries.forEach((entry, i) => {
      const s = stats[i] as WorkerMemoryStats;
      const own = s.devices.find((d) => d.id === entry.device.id) ?? s.devices[0];
      const worker: WorkerMemory = {
        pid: s.process.pid,
        deviceId: entry.device.id,
        rssBytes: s.process.rssBytes,
        deviceUsedBytes: entry.device.backend === 'cpu' ? 0 : (own?.processUsedBytes ?? 0),
        service: this.service,
      };
      workers.push(worker);
      if (own) {
        devices.push({
          deviceId: entry.device.id,
          backend: entry.device.backend,
          totalBytes: own.totalBytes,
          usedBytes: own.usedBytes,
          freeBytes: own.freeBytes,
          workers: [worker],
          source: own.source,
          pressure: pressureOf(own.usedBytes, own.totalBytes, this.thresholds),
        });
      }
    });
    const system = stats[0]?.system ?? { totalBytes: 0, availableBytes: 0 };
    return {
      system: {
        totalBytes: system.totalBytes,
        availableBytes: system.availableBytes,
        workersRssBytes: workers.reduce((sum, w) => sum + w.rssBytes, 0),
        pressure: pressureOf(system.totalBytes - system.availableBytes, system.totalBytes, this.thresholds),
      },
      devices,
      workers,
    };
  }

  /** Snapshots now and then every `intervalMs` until `signal` aborts; a failed snapshot ends the stream. */
  watch(intervalMs: number, signal: AbortSignal): AsyncIterable<MemorySnapshot> {
    return watchSnapshots((s) => this.snapshot(s), intervalMs, signal);
  }

  /**
   * Asks the workers (one device's, or all) to collect garbage and empty allocator caches.
   * Throws NOT_FOUND for an unknown device id.
   */
  async cleanup(deviceId?: string): Promise<MemoryCleanup> {
    const entries = deviceId ? [this.pool.get(deviceId)] : this.pool.list();
    const results = await Promise.all(
      entries.map(async (w) => {
        const r = await w.supervisor.request<WorkerCleanup>(
          'memory.cleanup',
          {},
          { timeoutMs: this.timeoutMs },
        );
        return {
          deviceId: w.device.id,
          freedBytes: r.freedBytes,
          rssBeforeBytes: r.rssBeforeBytes,
          rssAfterBytes: r.rssAfterBytes,
        };
      }),
    );
    return { freedBytes: results.reduce((sum, r) => sum + r.freedBytes, 0), devices: results };
  }
}
