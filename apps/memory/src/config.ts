import { baseServiceConfig, defineConfig } from '@dops/config';
import { z } from 'zod';

/** The memory service's settings: base settings plus pressure thresholds and the watch interval. */
export const memoryConfig = defineConfig(
  baseServiceConfig.extend({
    memory: z.object({
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
  { name: 'memory', defaults: { grpc: { port: 50052 }, telemetry: { serviceName: 'dops-memory' } } },
);
