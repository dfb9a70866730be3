import type { WorkerPool } from '@dops/worker-pool';
import type { WorkerBackend } from '@dops/worker-supervisor';
import {
  DEFAULT_THRESHOLDS,
  pressureOf,
  validateThresholds,
  type PressureLevel,
  type PressureThresholds,
} from './pressure';

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

export interface WorkerMemory {
  pid: number;
  deviceId: string;
  rssBytes: number;
  deviceUsedBytes: number;
}

export interface DeviceMemory {
  deviceId: string;
  backend: WorkerBackend;
  totalBytes: number;
  usedBytes: number;
  freeBytes: number;
  workers: WorkerMemory[];
  source: string;
  pressure: PressureLevel;
}

export interface MemorySnapshot {
  system: { totalBytes: number; availableBytes: number; workersRssBytes: number; pressure: PressureLevel };
  devices: DeviceMemory[];
  workers: WorkerMemory[];
}

export interface DeviceCleanup {
  deviceId: string;
  freedBytes: number;
  rssBeforeBytes: number;
  rssAfterBytes: number;
}

export interface MemoryMonitorOptions {
  thresholds?: PressureThresholds;
  /** Per-worker request timeout; default 10 000 ms. */
  requestTimeoutMs?: number;
}

/**
 * RAM and device memory of this node, read by the workers that hold the devices: CUDA/ROCm
 * through torch.cuda.mem_get_info, DirectML through DXGI + PDH, CPU from the OS.
 */
export class MemoryMonitor {
  private readonly thresholds: PressureThresholds;
  private readonly timeoutMs: number;

  /** Throws INVALID_ARGUMENT for bad thresholds. */
  constructor(
    private readonly pool: WorkerPool,
    options: MemoryMonitorOptions = {},
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

  /**
   * Snapshots now and then every `intervalMs` until `signal` aborts; a failed snapshot ends
   * the stream with its error.
   */
  async *watch(intervalMs: number, signal: AbortSignal): AsyncGenerator<MemorySnapshot> {
    while (!signal.aborted) {
      yield await this.snapshot(signal);
      await sleep(intervalMs, signal);
    }
  }

  /**
   * Asks the workers (one device's, or all) to collect garbage and empty allocator caches.
   * Throws NOT_FOUND for an unknown device id.
   */
  async cleanup(deviceId?: string): Promise<{ freedBytes: number; devices: DeviceCleanup[] }> {
    const entries = deviceId ? [this.pool.get(deviceId)] : this.pool.list();
    const results = await Promise.all(
      entries.map(async (w) => {
        const r = await w.supervisor.request<WorkerCleanup>(
          'memory.cleanup',
          {},
          { timeoutMs: this.timeoutMs },
        );
        return { deviceId: w.device.id, ...r };
      }),
    );
    return { freedBytes: results.reduce((sum, r) => sum + r.freedBytes, 0), devices: results };
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
