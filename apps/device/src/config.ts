import { baseServiceConfig, defineConfig } from '@dops/config';
import { z } from 'zod';

/** The device service's settings: the base service settings and its hosts; gRPC port 50051 by default. */
export const deviceConfig = defineConfig(
  baseServiceConfig.extend({
    device: z.object({
      /**
       * The services of this node that own its workers (their DeviceHostService), comma-separated
       * `host:port`. Default inference and postprocessing on this host: `127.0.0.1:50054,127.0.0.1:50056`.
       */
      hosts: z
        .string()
        .default('127.0.0.1:50054,127.0.0.1:50056')
        .transform((s) =>
          s
            .split(',')
            .map((h) => h.trim())
            .filter(Boolean),
        ),
      /** Per call to a host. Default 5 000 ms. */
      hostTimeoutMs: z.int().min(100).max(120_000).default(5_000),
    }),
  }),
  {
    name: 'device',
    defaults: { grpc: { port: 50051 }, telemetry: { serviceName: 'dops-device' }, metrics: { port: 9451 } },
  },
);
