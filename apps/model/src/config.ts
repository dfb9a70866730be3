import { baseServiceConfig, defineConfig } from '@dops/config';
import { z } from 'zod';

/** The model service's settings: base settings plus the registry, the tiers and the services it calls. */
export const modelConfig = defineConfig(
  baseServiceConfig.extend({
    model: z.object({
      /** Model roots, separated by the platform's path delimiter (`:` on Linux, `;` on Windows). Required. */
      roots: z.string().min(1),
      /** JSON file holding registry entries between restarts. Default `./dops-model-state.json`. */
      statePath: z.string().min(1).default('./dops-model-state.json'),
      /**
       * List pickle files (.ckpt, .bin-only diffusers folders) as loadable rather than refused; they
       * can run arbitrary code. The registry's listing policy only: a worker loads pickle only when
       * its own node allows it (worker.allowUnsafePickle of inference / postprocessing). Default false.
       */
      allowUnsafePickle: z.boolean().default(false),
      /** Bytes all loaded models may hold in worker RAM on this node; 0 = unbounded. Default 0. */
      ramBudgetBytes: z.int().min(0).default(0),
      /** A RAM-tier model unused this long is unloaded; 0 = kept. Default 600 000 (10 min). */
      keepAliveMs: z.int().min(0).default(600_000),
      /** Working memory reserved beside a model's bytes for a VRAM load. Default 1 GiB. */
      workingMemoryBytes: z
        .int()
        .min(0)
        .default(1024 ** 3),
      /** Config root the workers build single-file checkpoints with; empty = the worker's shipped configs. */
      configDir: z.string().default(''),
      /** Memory service (`host:port`) asked for VRAM reservations; empty = no reservations. Default `127.0.0.1:50052`. */
      memoryAddress: z.string().default('127.0.0.1:50052'),
      /** Model host (`host:port`) for every device not in hostAddresses. Default `127.0.0.1:50054` (inference). */
      hostAddress: z.string().default('127.0.0.1:50054'),
      /** Per-device model hosts: `cuda:0=10.0.0.5:50054,cpu:0=127.0.0.1:50055`. Default none. */
      hostAddresses: z.string().default(''),
      /** Longest wait for one load through a host. Default 600 000 ms. */
      loadTimeoutMs: z.int().min(1).default(600_000),
    }),
  }),
  {
    name: 'model',
    defaults: { grpc: { port: 50053 }, telemetry: { serviceName: 'dops-model' }, metrics: { port: 9453 } },
  },
);
