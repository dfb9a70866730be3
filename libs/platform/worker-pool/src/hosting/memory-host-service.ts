import { defineService, type ServiceRegistration } from '@dops/grpc-server';
import { memoryV1 } from '@dops/proto';
import type { WorkerPool } from '../worker-pool';
import { memoryHandlers } from './memory-handlers';
import { PoolMemoryMonitor, type PoolMemoryMonitorOptions } from './memory-monitor';

/**
 * dops.memory.v1.MemoryHostService of a worker-owning service: the memory of its own worker per
 * device, each worker labelled `serviceName` (`inference`, `postprocessing`), for the node's
 * memory service. Internal callers only. Throws INVALID_ARGUMENT for bad thresholds.
 */
export function memoryHostService(
  pool: WorkerPool,
  serviceName: string,
  options: PoolMemoryMonitorOptions = {},
): ServiceRegistration<typeof memoryV1.MemoryHostServiceService> {
  // The host has no WatchMemory: the memory service polls it.
  const { getMemory, cleanupMemory } = memoryHandlers(new PoolMemoryMonitor(pool, serviceName, options), 0);
  return defineService(
    memoryV1.MemoryHostServiceService,
    { getMemory, cleanupMemory },
    { default: ['internal'] },
  );
}
