import { baseServiceConfig, defineConfig } from '@dops/config';
import { z } from 'zod';

// `host:port` (a name, an IPv4 address or a bracketed IPv6 address), comma-separated.
const HOST_PORT = String.raw`(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}`;
const HOST_LIST = new RegExp(String.raw`^\s*${HOST_PORT}(?:\s*,\s*${HOST_PORT})*\s*$`);

/**
 * The memory service's settings: base settings (its `worker` block is unused: the memory service
 * starts no worker) plus the hosts it asks, pressure thresholds and the watch interval.
 */
export const memoryConfig = defineConfig(
  baseServiceConfig.extend({
    memory: z.object({
      /**
       * The worker-owning services of this node whose MemoryHostService it asks, comma-separated
       * `host:port` (DOPS_MEMORY_HOSTS). Default `127.0.0.1:50054,127.0.0.1:50056` (inference, postprocessing).
       */
      hosts: z
        .string()
        .regex(HOST_LIST, 'must be a comma-separated list of host:port')
        .default('127.0.0.1:50054,127.0.0.1:50056'),
      /** Fraction of memory in use from which pressure is `high`. Default 0.85. */
      highPressure: z.number().gt(0).lt(1).default(0.85),
      /** Fraction of memory in use from which pressure is `critical`. Default 0.95. */
      criticalPressure: z.number().gt(0).max(1).default(0.95),
      /** Interval of WatchMemory when the client asks for 0. Default 2 000 ms. */
      watchIntervalMs: z.int().min(100).max(600_000).default(2_000),
      /** Fraction of a device's total memory that reservations may take (the rest is headroom). Default 0.9. */
      reservableFraction: z.number().gt(0).max(1).default(0.9),
    }),
  }),
  {
    name: 'memory',
    defaults: { grpc: { port: 50052 }, telemetry: { serviceName: 'dops-memory' }, metrics: { port: 9452 } },
  },
);
