import { delimiter, join } from 'node:path';
import { tmpdir } from 'node:os';
import { baseServiceConfig, defineConfig, DEFAULT_ARTIFACT_ROOT } from '@dops/config';
import { queueConfig } from '@dops/queue';
import { z } from 'zod';

/**
 * The inference service's settings: base settings plus where the worker reads and writes
 * files; gRPC port 50054 by default. The two roots keep the environment names the Python worker
 * reads (DOPS_ARTIFACT_ROOT, DOPS_INPUT_ROOT).
 */
export const inferenceConfig = defineConfig(
  baseServiceConfig.extend({
    /** The generate stage consumer; it runs only when DOPS_REDIS_URL is set. */
    queue: queueConfig,
    inference: z.object({
      /** Where generated images (and previews) are written. Default `<tmp>/dops-artifacts`. */
      artifactRoot: z.string().min(1).default(DEFAULT_ARTIFACT_ROOT).meta({ env: 'DOPS_ARTIFACT_ROOT' }),
      /** The only folder init images, masks and ControlNet hints are read from. Default `<tmp>/dops-inputs`. */
      inputRoot: z.string().min(1).default(join(tmpdir(), 'dops-inputs')).meta({ env: 'DOPS_INPUT_ROOT' }),
      /** LoRA and ControlNet roots, separated by the platform's path delimiter (`:` / `;`). Default none. */
      modelRoots: z.string().default(''),
      /** Config root for single-file checkpoints when a load names none; default the worker's shipped configs. */
      configDir: z.string().min(1).optional(),
      /**
       * Model service (`host:port`) asked for the identity (path, status; sha256 once hashed) of a
       * queued job's model when no device here holds it; this service then loads it itself.
       * Empty = such jobs fail FAILED_PRECONDITION. Default `127.0.0.1:50053`.
       */
      modelServiceAddress: z.string().default('127.0.0.1:50053'),
      /** Memory service (`host:port`) asked for the VRAM reservation of such a load; empty = not reserved. Default `127.0.0.1:50052`. */
      memoryAddress: z.string().default('127.0.0.1:50052'),
      /** Working memory reserved beside a model's bytes for a VRAM load. Default 1 GiB. */
      workingMemoryBytes: z
        .int()
        .min(0)
        .default(1024 ** 3),
      /** Longest generation of a call without a deadline. Default 600 000 ms. */
      maxGenerationMs: z.int().min(1_000).default(600_000),
      /**
       * Dynamic batching: most compatible requests (same model, LoRAs, ControlNets, size, steps,
       * scheduler, CFG, mode; prompts, seeds and input images may differ) one worker call runs
       * together per device; 1 = off. Default 4.
       */
      maxBatch: z.int().min(1).max(8).default(4),
      /** How long an idle device waits for more compatible requests before it runs a batch. Default 25 ms. */
      batchWaitMs: z.int().min(0).max(10_000).default(25),
      /** How long UnloadModel waits for the generation running on its device before FAILED_PRECONDITION. Default 60 000 ms. */
      unloadWaitMs: z.int().min(0).max(3_600_000).default(60_000),
    }),
  }),
  {
    name: 'inference',
    defaults: {
      grpc: { port: 50054 },
      telemetry: { serviceName: 'dops-inference' },
      metrics: { port: 9454 },
    },
  },
);

/** `inference.modelRoots` as a list. */
export function modelRootsOf(roots: string): string[] {
  return roots.split(delimiter).filter((root) => root.length > 0);
}
