import { z } from 'zod';

const ms = (fallback: number) => z.int().min(1).default(fallback);

/** Redis URL of the contract (docs/queue-contract.md) when none is configured. */
export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';
/** BullMQ prefix and prefix of every dops key (`dops:cancel:<jobId>`, `dops:node:<nodeId>`). */
export const DEFAULT_PREFIX = 'dops';

/**
 * Queue settings a service extends its config with: `baseServiceConfig.extend({ queue: queueConfig })`.
 * Environment names: DOPS_REDIS_URL (pinned, as the contract names it), DOPS_QUEUE_PREFIX,
 * DOPS_QUEUE_LOCK_DURATION_MS, ... `redisUrl` has no default here: a service that can run
 * without Redis (inference) leaves it unset; one that cannot uses `redisUrlOf`.
 */
export const queueConfig = z.object({
  /** `redis://host:port[/db]`; unset = the service runs without queues where it can. */
  redisUrl: z.string().min(1).optional().meta({ env: 'DOPS_REDIS_URL' }),
  /** BullMQ prefix and key prefix. Default `dops`; tests use a unique one. */
  prefix: z.string().min(1).default(DEFAULT_PREFIX),
  /** This node's id in queue names (`inference@<nodeId>`) and announcements. Default the host name. */
  nodeId: z.string().min(1).optional(),
  /** BullMQ lock of an active job; a process silent for this long loses the job to another. Default 30 s. */
  lockDurationMs: ms(30_000),
  /** How often workers look for stalled jobs. Default 30 s. */
  stalledIntervalMs: ms(30_000),
  /** Stalls before a job fails instead of being handed on. Default 1. */
  maxStalledCount: z.int().min(0).default(1),
  /** Stage jobs one process runs at once; unset = one per device. */
  concurrency: z.int().min(1).optional(),
});

export type QueueConfig = z.output<typeof queueConfig>;

/** The configured Redis URL, or the contract's default. */
export function redisUrlOf(config: Pick<QueueConfig, 'redisUrl'>): string {
  return config.redisUrl ?? DEFAULT_REDIS_URL;
}
