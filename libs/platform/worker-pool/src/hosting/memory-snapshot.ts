import type { WorkerBackend } from '@dops/worker-supervisor';
import type { PressureLevel } from './memory-pressure';

/** One worker process's memory: RSS, and what it holds on its device. */
export interface WorkerMemory {
  pid: number;
  deviceId: string;
  rssBytes: number;
  /** 0 on CPU, where RSS is the whole story. */
  deviceUsedBytes: number;
  /** The service that owns the worker: `inference`, `postprocessing`. */
  service: string;
}

export interface DeviceMemory {
  deviceId: string;
  backend: WorkerBackend;
  totalBytes: number;
  usedBytes: number;
  freeBytes: number;
  /** Every worker on the device (one per worker-owning service). */
  workers: WorkerMemory[];
  /** Where the numbers come from: `torch.cuda.mem_get_info`, `os`, `dxgi+pdh`. */
  source: string;
  pressure: PressureLevel;
}

export interface SystemMemory {
  totalBytes: number;
  availableBytes: number;
  /** Sum of the RSS of the workers in the snapshot. */
  workersRssBytes: number;
  pressure: PressureLevel;
}

export interface MemorySnapshot {
  system: SystemMemory;
  devices: DeviceMemory[];
  workers: WorkerMemory[];
}

export interface DeviceCleanup {
  deviceId: string;
  freedBytes: number;
  rssBeforeBytes: number;
  rssAfterBytes: number;
}

export interface MemoryCleanup {
  freedBytes: number;
  devices: DeviceCleanup[];
}

/**
 * What the memory calls read and act on: one service's own workers (a host) or the node's,
 * merged from every host (the memory service). Errors are DopsErrors.
 */
export interface MemorySource {
  /** One snapshot now. */
  snapshot(signal?: AbortSignal): Promise<MemorySnapshot>;
  /** A snapshot now and then every `intervalMs` until `signal` aborts; a failed snapshot ends it with its error. */
  watch(intervalMs: number, signal: AbortSignal): AsyncIterable<MemorySnapshot>;
  /** Asks the workers (of one device, or all) to collect garbage and empty allocator caches; NOT_FOUND for an unknown device. */
  cleanup(deviceId?: string): Promise<MemoryCleanup>;
}

/** `snapshot()` now and then every `intervalMs` until `signal` aborts (the `watch` of a MemorySource). */
export async function* watchSnapshots(
  snapshot: (signal: AbortSignal) => Promise<MemorySnapshot>,
  intervalMs: number,
  signal: AbortSignal,
): AsyncGenerator<MemorySnapshot> {
  while (!signal.aborted) {
    yield await snapshot(signal);
    await sleep(intervalMs, signal);
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
