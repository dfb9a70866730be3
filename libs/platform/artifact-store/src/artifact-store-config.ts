import { z } from 'zod';
import { DEFAULT_ARTIFACT_ROOT } from '@dops/config';
import type { ArtifactStore } from './artifact-store';
import { DirectoryArtifactStore } from './directory-store';
import { S3ArtifactStore } from './s3-store';

/**
 * Artifact settings a service extends its config with under `artifact`: DOPS_ARTIFACT_ROOT,
 * DOPS_ARTIFACT_BACKEND, DOPS_ARTIFACT_TTL_HOURS, DOPS_ARTIFACT_SWEEP_INTERVAL_MS,
 * DOPS_ARTIFACT_S3_BUCKET, DOPS_ARTIFACT_S3_ENDPOINT, DOPS_ARTIFACT_S3_REGION,
 * DOPS_ARTIFACT_S3_PREFIX, DOPS_ARTIFACT_S3_FORCE_PATH_STYLE. S3 credentials come from the
 * SDK's default chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a web identity, an instance role).
 */
export const artifactStoreConfig = z
  .object({
    /** The shared folder the workers write images to (their DOPS_ARTIFACT_ROOT). Default `<tmp>/dops-artifacts`. */
    root: z.string().min(1).default(DEFAULT_ARTIFACT_ROOT),
    /** `directory`: the artifact root is the store; `s3`: finished jobs' images go to a bucket. Default `directory`. */
    backend: z.enum(['directory', 's3']).default('directory'),
    /** Hours an artifact is kept; then it is deleted, whether downloaded or not. Default 24. */
    ttlHours: z.number().positive().default(24),
    /** How often expired artifacts are looked for. Default 10 min. */
    sweepIntervalMs: z.int().min(1_000).default(600_000),
    s3: z.object({
      /** Required with backend `s3`. */
      bucket: z.string().min(1).optional(),
      /** An S3-compatible server's URL; unset = AWS S3. */
      endpoint: z.url().optional(),
      /** Default `us-east-1`. */
      region: z.string().min(1).default('us-east-1'),
      /** Key prefix inside the bucket. Default none. */
      prefix: z.string().default(''),
      /** Path-style URLs; unset = on with an endpoint, off for AWS. */
      forcePathStyle: z.boolean().optional(),
    }),
  })
  .superRefine((config, ctx) => {
    if (config.backend === 's3' && !config.s3.bucket)
      ctx.addIssue({ code: 'custom', path: ['s3', 'bucket'], message: 'is required with backend s3' });
  });

export type ArtifactStoreConfig = z.output<typeof artifactStoreConfig>;

/** The store the settings name. Throws when backend `s3` has no bucket (the schema refuses that first). */
export function createArtifactStore(config: ArtifactStoreConfig): ArtifactStore {
  if (config.backend === 'directory') return new DirectoryArtifactStore(config.root);
  if (!config.s3.bucket) throw new Error('artifact.s3.bucket is required with backend s3');
  return new S3ArtifactStore({
    bucket: config.s3.bucket,
    endpoint: config.s3.endpoint,
    region: config.s3.region,
    prefix: config.s3.prefix,
    forcePathStyle: config.s3.forcePathStyle,
  });
}
