import type { ConnectionOptions } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';

/**
 * A new ioredis connection to `url`. BullMQ workers and blocking reads need
 * `maxRetriesPerRequest: null` (a command waits for the reconnect instead of failing), which is
 * the default here. Throws nothing; connection errors surface on the first command (and as
 * 'error' events, which are swallowed unless `onError` is given, so a Redis restart never
 * crashes the process).
 */
export function createRedis(
  url: string,
  options: RedisOptions & { onError?: (err: Error) => void } = {},
): Redis {
  const { onError, ...rest } = options;
  const redis = new Redis(url, { maxRetriesPerRequest: null, enableReadyCheck: true, ...rest });
  redis.on('error', (err: Error) => onError?.(err));
  return redis;
}

export type { Redis } from 'ioredis';

/**
 * ioredis options for `url` (host, port, db, username, password, TLS for `rediss:`), for
 * BullMQ's `connection` option: BullMQ then owns the connection and closes it with the queue or
 * worker. Throws TypeError for a malformed URL.
 */
export function connectionOptions(url: string): ConnectionOptions {
  const u = new URL(url);
  const db = u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0;
  return {
    host: u.hostname || '127.0.0.1',
    port: u.port ? Number(u.port) : 6379,
    db,
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    tls: u.protocol === 'rediss:' ? {} : undefined,
    maxRetriesPerRequest: null,
  };
}
