import { defineService, type ServiceRegistration } from '@dops/grpc-server';
import { memoryV1 } from '@dops/proto';
import { memoryHandlers, type MemorySource } from '@dops/worker-pool';

/**
 * `dops.memory.v1.MemoryService` over a MemorySource (the node's: NodeMemory), with the same
 * handlers as each host's MemoryHostService; `defaultIntervalMs` serves interval_ms = 0.
 */
export function memoryService(
  source: MemorySource,
  defaultIntervalMs: number,
): ServiceRegistration<typeof memoryV1.MemoryServiceService> {
  return defineService(memoryV1.MemoryServiceService, memoryHandlers(source, defaultIntervalMs), {
    default: ['operator', 'internal'],
  });
}
