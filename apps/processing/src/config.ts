import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { artifactStoreConfig } from '@dops/artifact-store';
import { baseServiceConfig, defineConfig } from '@dops/config';
import { queueConfig } from '@dops/queue';
import { z } from 'zod';

/** The processing service's settings: base settings, the queue, and job policy; gRPC port 50055. */
export const processingConfig = defineConfig(
  baseServiceConfig.extend({
    queue: queueConfig,
    /** Where finished jobs' images are kept for download: DOPS_ARTIFACT_ROOT, DOPS_ARTIFACT_BACKEND, DOPS_ARTIFACT_TTL_HOURS, DOPS_ARTIFACT_S3_*. */
    artifact: artifactStoreConfig,
    /**
     * The read-only queue dashboard (bull-board) at `https://<host>:<port>/queues`: HTTPS with this
     * service's certificate, a bearer token of the role `operator` (the same token file). 0 = a free
     * port (tests). DOPS_ADMIN_ENABLED (default true), DOPS_ADMIN_HOST (default `127.0.0.1`:
     * loopback unless a deployment opens it, as the manifests do behind their network policies),
     * DOPS_ADMIN_PORT (default 9465).
     */
    admin: z
      .object({
        enabled: z.boolean().default(true),
        host: z.string().min(1).default('127.0.0.1'),
        port: z.int().min(0).max(65535).default(9465),
      })
      .prefault({}),
    processing: z.object({
      /** Model service (`host:port`), the registry every model a job names is checked in; empty = only announced models. Default `127.0.0.1:50053`. */
      modelServiceAddress: z.string().default('127.0.0.1:50053'),
      /** Terminal jobs are kept this long. Default 24 h. */
      retentionMs: z.int().min(1_000).default(86_400_000),
      /** Queued generations before SubmitJob answers RESOURCE_EXHAUSTED. Default 10 000. */
      maxQueued: z.int().min(1).default(10_000),
      /** Retry hint with RESOURCE_EXHAUSTED. Default 5 s. */
      retryAfterMs: z.int().min(0).default(5_000),
      /** Most jobs one batch may expand to. Default 1 000. */
      maxBatchItems: z.int().min(1).default(1_000),
      /** Deadline of a job that sets none. Default 1 h. */
      defaultDeadlineMs: z.int().min(1_000).default(3_600_000),
      /** The longest deadline_seconds a job may ask for (longer: INVALID_ARGUMENT). Default 7 days. */
      maxDeadlineSeconds: z.int().min(1).max(2_000_000).default(604_800),
      /** Attempts of a stage failing with a retryable code. Default 3. */
      attempts: z.int().min(1).default(3),
      /** First retry delay (exponential with jitter after). Default 1 s. */
      backoffMs: z.int().min(1).default(1_000),
      /** Largest input image. Default 20 MiB. */
      maxImageBytes: z
        .int()
        .min(1)
        .default(20 * 1024 * 1024),
      /** Shared folder input images are written to; the inference nodes' DOPS_INPUT_ROOT. */
      inputRoot: z.string().min(1).default(join(tmpdir(), 'dops-inputs')).meta({ env: 'DOPS_INPUT_ROOT' }),
      /** Safety stage when a request leaves it unspecified. Default `flag`. */
      defaultSafety: z.enum(['off', 'flag', 'blur', 'block']).default('flag'),
      /** Unfinished (queued, held or running) jobs one client may have; a batch counts its jobs. Default 100. */
      maxQueuedPerClient: z.int().min(1).default(100),
      /** SubmitJob, SubmitBatch and RetryJob calls per second per client. Default 20. */
      submitsPerSecond: z.int().min(1).default(20),
      /** Submits a client may make over that rate within any 10 s (bursts); 0 = none. Default 40. */
      submitBurst: z.int().min(0).default(40),
      /** Sessions one client may have open (not cancelled, not expired). Default 10. */
      maxOpenSessions: z.int().min(1).default(10),
      /** A session expires this long after its last use (then NOT_FOUND). Default 24 h. */
      sessionTtlMs: z.int().min(1_000).default(86_400_000),
      /** An idempotency key returns its first job this long. Default 24 h. */
      idempotencyTtlMs: z.int().min(1_000).default(86_400_000),
    }),
  }),
  {
    name: 'processing',
    defaults: {
      grpc: { port: 50055 },
      telemetry: { serviceName: 'dops-processing' },
      metrics: { port: 9455 },
    },
  },
);
