import { z } from 'zod';

const ms = (fallback: number) => z.int().min(1).default(fallback);

/** Redis URL of the contract (docs/queue-contract.md) when none is configured. */
export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';
/** BullMQ prefix and prefix of every dops key (`dops:cancel:<jobId>`, `dops:node:<nodeId>`). */
export const DEFAULT_PREFIX = 'dops';

const file = () => z.string().min(1).optional();

/**
 * Queue settings a service extends its config with: `baseServiceConfig.extend({ queue: queueConfig })`.
 * Environment names: DOPS_REDIS_URL (pinned, as the contract names it), DOPS_QUEUE_PREFIX,
 * DOPS_QUEUE_REDIS_PASSWORD_FILE, DOPS_QUEUE_TLS_CA_FILE, DOPS_QUEUE_TLS_CERT_FILE,
 * DOPS_QUEUE_TLS_KEY_FILE, DOPS_QUEUE_LOCK_DURATION_MS, ... `redisUrl` has no default here: a
 * service that can run without Redis (inference) leaves it unset. Every service hands
 * `redisUrlOf(config.queue)` (which folds the password file and the TLS files in) to the
 * connections, never `redisUrl` itself.
 */
export const queueConfig = z
  .object({
    /**
     * `redis://[user[:password]@]host:port[/db]`, `rediss://` for TLS; unset = the service runs
     * without queues where it can. The dops deployments use the ACL user `dops` and take the
     * password from `redisPasswordFile`: `redis://dops@redis:6379`.
     */
    redisUrl: z.string().min(1).optional().meta({ env: 'DOPS_REDIS_URL' }),
    /** File holding the Redis password (e.g. a mounted secret); replaces a password in the URL. Read at each connect. */
    redisPasswordFile: file(),
    /** PEM CA bundle that signs Redis's TLS certificate (`rediss://` only). Default the system CAs. */
    tlsCaFile: file(),
    /** PEM client certificate for a Redis that asks for one (`tls-auth-clients`); with `tlsKeyFile`. */
    tlsCertFile: file(),
    /** PEM private key of `tlsCertFile`. */
    tlsKeyFile: file(),
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
  })
  .superRefine((config, ctx) => {
    const tlsFiles = config.tlsCaFile ?? config.tlsCertFile ?? config.tlsKeyFile;
    if (tlsFiles && config.redisUrl && !config.redisUrl.startsWith('rediss://')) {
      ctx.addIssue({
        code: 'custom',
        path: ['redisUrl'],
        message: 'TLS files are set (queue.tls*File), so the Redis URL must be rediss://',
      });
    }
    if (Boolean(config.tlsCertFile) !== Boolean(config.tlsKeyFile)) {
      ctx.addIssue({
        code: 'custom',
        path: [config.tlsCertFile ? 'tlsKeyFile' : 'tlsCertFile'],
        message: 'tlsCertFile and tlsKeyFile go together',
      });
    }
  });

export type QueueConfig = z.output<typeof queueConfig>;

/** The settings `redisUrlOf` reads. */
export type RedisUrlSettings = Pick<QueueConfig, 'redisUrl'> &
  Partial<Pick<QueueConfig, 'redisPasswordFile' | 'tlsCaFile' | 'tlsCertFile' | 'tlsKeyFile'>>;

/**
 * The URL every connection of the service uses (`createRedis`, `connectionOptions`,
 * `StageWorker`, ...): the configured one (or the contract's default) with the password file and
 * TLS files as its `password_file` / `tls_*_file` parameters (see connection.ts). It names the
 * files, not their content; `redactRedisUrl` hides a password the configured URL itself carried.
 * The files are read when a connection is made, not here.
 */
export function redisUrlOf(config: RedisUrlSettings): string {
  const url = config.redisUrl ?? DEFAULT_REDIS_URL;
  const params: Array<[string, string | undefined]> = [
    ['password_file', config.redisPasswordFile],
    ['tls_ca_file', config.tlsCaFile],
    ['tls_cert_file', config.tlsCertFile],
    ['tls_key_file', config.tlsKeyFile],
  ];
  if (params.every(([, value]) => value === undefined)) return url;
  const u = new URL(url);
  for (const [key, value] of params) if (value !== undefined) u.searchParams.set(key, value);
  // The file's password replaces the URL's; no copy of the old one travels on.
  if (config.redisPasswordFile !== undefined) u.password = '';
  return u.toString();
}
