import { readFileSync } from 'node:fs';
import type { ConnectionOptions as TlsConnectionOptions } from 'node:tls';
import type { ConnectionOptions } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';

/**
 * Query parameters a dops Redis URL may carry. They name files, never secrets, so a URL that
 * `redisUrlOf` built can be logged: `password_file` (the password, e.g. a mounted Kubernetes
 * secret; it replaces a password in the URL), and for `rediss:` only `tls_ca_file` (PEM CA
 * bundle that signs the server's certificate; default the system CAs), `tls_cert_file` +
 * `tls_key_file` (PEM client certificate and key, for `tls-auth-clients`). The files are read
 * each time a connection is made, so a rotated secret is picked up by the next one.
 */
export const REDIS_URL_FILE_PARAMS = [
  'password_file',
  'tls_ca_file',
  'tls_cert_file',
  'tls_key_file',
] as const;
type FileParam = (typeof REDIS_URL_FILE_PARAMS)[number];

/**
 * The ACL rules of the dops Redis user (`user dops on #<sha256> <rules>`), in every
 * configuration: the local run (tools/redis-credentials.sh), compose, Kubernetes and the
 * tests' Redis. Everything BullMQ, ioredis and dops use (Lua scripts, pub/sub, streams,
 * blocking pops, INFO for the ready check and version, CLIENT LIST for `getWorkers`), nothing
 * administrative (CONFIG, SHUTDOWN, FLUSHALL, KEYS, DEBUG, MODULE, ACL, replication, ...).
 *
 * The default user gets the same rules behind a random password hash that nobody holds
 * (`user default on #<random> <rules>`), not `user default off`: Redis replays the AOF as the
 * default user and re-checks its ACL at each EXEC, so with the default user off every MULTI/EXEC
 * and script in the AOF (all of BullMQ's writes) is silently dropped at restart
 * (redis/redis#14541, valkey-io/valkey#3983; seen with Redis 7.0.15).
 */
export const REDIS_ACL_RULES = '~* &* +@all -@dangerous +info +client|list';

/** The ioredis user name of the dops ACL user. */
export const REDIS_ACL_USER = 'dops';

/** Reads a file a URL parameter names; the error names the parameter and the path, never the content. */
function readParamFile(param: FileParam, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new Error(`redis URL ${param}: cannot read ${path}: ${(err as Error).message}`);
  }
}

/** A password file's content without its trailing CR/LF (as `echo` or an editor leaves it). Throws when empty. */
export function readPasswordFile(path: string): string {
  const password = readParamFile('password_file', path)
    .toString('utf8')
    .replace(/[\r\n]+$/, '');
  if (password === '') throw new Error(`redis URL password_file: ${path} is empty`);
  return password;
}

/** Where and as whom to connect: the part of the ioredis options a URL determines. */
export interface RedisTarget {
  host: string;
  port: number;
  db: number;
  username?: string;
  password?: string;
  tls?: TlsConnectionOptions;
}

/**
 * ioredis options for `url`: host, port, db, username, password (or `password_file`), TLS for
 * `rediss:` with the `tls_*_file` parameters. Throws TypeError for a malformed URL, an unknown
 * parameter or TLS files on a `redis:` URL, and Error when a named file cannot be read.
 */
export function redisOptions(url: string): RedisTarget {
  const u = new URL(url);
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw new TypeError(`redis URL must be redis:// or rediss://, got ${u.protocol}//`);
  }
  const files: Partial<Record<FileParam, string>> = {};
  for (const [key, value] of u.searchParams) {
    if (!(REDIS_URL_FILE_PARAMS as readonly string[]).includes(key)) {
      throw new TypeError(`redis URL: unknown parameter ${key} (known: ${REDIS_URL_FILE_PARAMS.join(', ')})`);
    }
    files[key as FileParam] = value;
  }
  const tls = u.protocol === 'rediss:';
  if (!tls && (files.tls_ca_file || files.tls_cert_file || files.tls_key_file)) {
    throw new TypeError('redis URL: TLS files given for a redis:// URL (use rediss://)');
  }
  if (Boolean(files.tls_cert_file) !== Boolean(files.tls_key_file)) {
    throw new TypeError('redis URL: tls_cert_file and tls_key_file go together');
  }
  const db = u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0) throw new TypeError(`redis URL: bad database ${u.pathname.slice(1)}`);
  const password = files.password_file
    ? readPasswordFile(files.password_file)
    : u.password
      ? decodeURIComponent(u.password)
      : undefined;
  return {
    host: u.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1',
    port: u.port ? Number(u.port) : 6379,
    db,
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password,
    tls: tls
      ? {
          ...(files.tls_ca_file ? { ca: readParamFile('tls_ca_file', files.tls_ca_file) } : {}),
          ...(files.tls_cert_file ? { cert: readParamFile('tls_cert_file', files.tls_cert_file) } : {}),
          ...(files.tls_key_file ? { key: readParamFile('tls_key_file', files.tls_key_file) } : {}),
        }
      : undefined,
  };
}

/**
 * A new ioredis connection to `url` (see `redisOptions`). BullMQ workers and blocking reads need
 * `maxRetriesPerRequest: null` (a command waits for the reconnect instead of failing), which is
 * the default here. Throws only for a bad URL or an unreadable file it names; connection errors
 * surface on the first command (and as 'error' events, which are swallowed unless `onError` is
 * given, so a Redis restart never crashes the process).
 */
export function createRedis(
  url: string,
  options: RedisOptions & { onError?: (err: Error) => void } = {},
): Redis {
  const { onError, ...rest } = options;
  const redis = new Redis({
    ...redisOptions(url),
    maxRetriesPerRequest: null,
    enableReadyCheck: true,
    ...rest,
  });
  redis.on('error', (err: Error) => onError?.(err));
  return redis;
}

export type { Redis } from 'ioredis';

/**
 * ioredis options for `url` (see `redisOptions`), for BullMQ's `connection` option: BullMQ then
 * owns the connection and closes it with the queue or worker.
 */
export function connectionOptions(url: string): ConnectionOptions {
  return { ...redisOptions(url), maxRetriesPerRequest: null };
}

/** `url` with its password replaced by `***`, for logs. */
export function redactRedisUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '<malformed redis URL>';
  }
}
