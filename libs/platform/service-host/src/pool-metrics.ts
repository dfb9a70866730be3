import { processMetrics } from '@dops/metrics';
import { PoolMemoryMonitor, type WorkerPool } from '@dops/worker-pool';

// A scrape must not wait long on a busy or restarting worker; its device is left out instead.
const MEMORY_TIMEOUT_MS = 2_000;

/**
 * Adds the pool's device memory (each worker's `memory.stats`) and worker restart counts to the
 * process metrics, read at each scrape. Throws nothing.
 */
export function watchPoolMetrics(pool: WorkerPool, service: string): void {
  const metrics = processMetrics();
  const monitor = new PoolMemoryMonitor(pool, service, { requestTimeoutMs: MEMORY_TIMEOUT_MS });
  metrics.addDeviceMemorySource(async () =>
    (await monitor.snapshot()).devices.map((d) => ({
      device: d.deviceId,
      totalBytes: d.totalBytes,
      usedBytes: d.usedBytes,
      freeBytes: d.freeBytes,
    })),
  );
  metrics.addWorkerRestartSource(() =>
    pool.list().map((w) => ({
      worker: w.supervisor.options.name,
      device: w.device.id,
      restarts: w.supervisor.health().restarts,
    })),
  );
}
