import { delimiter, join } from 'node:path';
import { tmpdir } from 'node:os';
import { baseServiceConfig, defineConfig, DEFAULT_ARTIFACT_ROOT } from '@dops/config';
import { queueConfig } from '@dops/queue';
import { z } from 'zod';

/**
 * The postprocessing service's settings: base settings plus where the worker reads and writes
 * files and which models it may use; gRPC port 50056 by default. The two roots keep the
 * environment names the Python worker reads (DOPS_ARTIFACT_ROOT, DOPS_INPUT_ROOT).
 */
export const postprocessingConfig = defineConfig(
  baseServiceConfig.extend({
    queue: queueConfig,
    postprocessing: z.object({
      /** Where outputs are written; also read from (a workflow stage's input is the previous stage's output). Default `<tmp>/dops-artifacts`. */
      artifactRoot: z.string().min(1).default(DEFAULT_ARTIFACT_ROOT).meta({ env: 'DOPS_ARTIFACT_ROOT' }),
      /** The folder client images are read from. Default `<tmp>/dops-inputs`. */
      inputRoot: z.string().min(1).default(join(tmpdir(), 'dops-inputs')).meta({ env: 'DOPS_INPUT_ROOT' }),
      /** Upscaler, face restorer and safety checker roots, separated by the platform's path delimiter. Default none. */
      modelRoots: z.string().default(''),
      /** The safety checker folder used when a request names none. Default none. */
      safetyCheckerPath: z.string().min(1).optional(),
      /** Policy for a safety check that sets none. Default `flag`. */
      defaultSafetyPolicy: z.enum(['flag', 'blur', 'block']).default('flag'),
      /** Longest operation of a call without a deadline. Default 600 000 ms. */
      maxRequestMs: z.int().min(1_000).default(600_000),
    }),
  }),
  {
    name: 'postprocessing',
    defaults: {
      grpc: { port: 50056 },
      telemetry: { serviceName: 'dops-postprocessing' },
      metrics: { port: 9456 },
    },
  },
);

/** `postprocessing.modelRoots` as a list. */
export function modelRootsOf(roots: string): string[] {
  return roots.split(delimiter).filter((root) => root.length > 0);
}
