import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REDIS_ACL_RULES, REDIS_ACL_USER, createRedis } from './connection';

/** TLS for a test Redis: it then listens on `tls-port` only and hands out a `rediss://` URL. */
export interface TestRedisTls {
  /** PEM server certificate and key (the certificate must name 127.0.0.1). */
  certFile: string;
  keyFile: string;
  /** PEM CA that signed the server certificate and the client certificates. */
  caFile: string;
  /** A client certificate and key: the server then requires one (`tls-auth-clients yes`) and the URL carries these. */
  clientCertFile?: string;
  clientKeyFile?: string;
}

/**
 * A redis-server a test started, protected as the deployments are: bound to 127.0.0.1, the
 * default user locked, the ACL user `dops` (REDIS_ACL_RULES) with a random password, its files
 * owner-only. `restart()` keeps the port, password and data dir (AOF survives it).
 */
export interface TestRedis {
  /** `redis://dops:<password>@127.0.0.1:<port>` (`rediss://...?tls_ca_file=...` with TLS). */
  url: string;
  port: number;
  /** The `dops` user's password (also in `url`). */
  password: string;
  /** The server's data folder (0700; AOF and the ACL file live here). */
  dir: string;
  /** SIGKILL, then a new server on the same port and dir (what AOF keeps survives). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * The ACL file of a dops Redis: the user `dops` with `password` (stored as its SHA-256), and the
 * default user locked behind a random hash nobody has the password of (see REDIS_ACL_RULES for
 * why it is not simply `off`).
 */
export function redisAclFile(password: string): string {
  const hash = createHash('sha256').update(password).digest('hex');
  const locked = randomBytes(32).toString('hex');
  return (
    `user default on #${locked} ${REDIS_ACL_RULES}\n` +
    `user ${REDIS_ACL_USER} on #${hash} ${REDIS_ACL_RULES}\n`
  );
}

/**
 * For tests: starts `redis-server` (on PATH) on a free port, without snapshots; `aof: true`
 * turns on `appendonly yes` with `appendfsync always`; `tls` serves TLS only. Rejects when it
 * does not answer PING within 10 s.
 */
export async function startTestRedis(
  options: { aof?: boolean; tls?: TestRedisTls } = {},
): Promise<TestRedis> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'dops-redis-')); // 0700
  const password = randomBytes(24).toString('hex');
  const aclFile = join(dir, 'users.acl');
  writeFileSync(aclFile, redisAclFile(password), { mode: 0o600 });
  const scheme = options.tls ? 'rediss' : 'redis';
  const tls = options.tls;
  const params = new URLSearchParams();
  if (tls) params.set('tls_ca_file', tls.caFile);
  if (tls?.clientCertFile) params.set('tls_cert_file', tls.clientCertFile);
  if (tls?.clientKeyFile) params.set('tls_key_file', tls.clientKeyFile);
  const query = params.toString() ? `?${params.toString()}` : '';
  const url = `${scheme}://${REDIS_ACL_USER}:${password}@127.0.0.1:${port}${query}`;
  let child: ChildProcess | undefined;
  const launch = async () => {
    const args = ['--bind', '127.0.0.1', '--protected-mode', 'yes', '--aclfile', aclFile];
    args.push('--save', '', '--dir', dir, '--appendonly', options.aof ? 'yes' : 'no', '--daemonize', 'no');
    if (options.aof) args.push('--appendfsync', 'always');
    if (tls) {
      args.push('--port', '0', '--tls-port', String(port));
      args.push(
        '--tls-cert-file',
        tls.certFile,
        '--tls-key-file',
        tls.keyFile,
        '--tls-ca-cert-file',
        tls.caFile,
      );
      args.push('--tls-auth-clients', tls.clientCertFile ? 'yes' : 'no');
    } else {
      args.push('--port', String(port));
    }
    // umask 077: the AOF, its folder and anything else the server writes are owner-only.
    child = spawn('sh', ['-c', 'umask 077 && exec redis-server "$@"', 'redis-server', ...args], {
      stdio: 'ignore',
    });
    const probe = createRedis(url, {
      maxRetriesPerRequest: 1,
      retryStrategy: () => 50,
    });
    const until = Date.now() + 10_000;
    try {
      for (;;) {
        try {
          if ((await probe.ping()) === 'PONG') return;
        } catch (err) {
          if (Date.now() > until) throw err;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      probe.disconnect();
    }
  };
  const kill = async () => {
    const c = child;
    if (!c || c.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      c.once('exit', () => resolve());
      c.kill('SIGKILL');
    });
  };
  await launch();
  return {
    url,
    port,
    password,
    dir,
    restart: async () => {
      await kill();
      await launch();
    },
    stop: async () => {
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
