import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRedis } from './connection';

/** A redis-server a test started; `restart()` keeps the port and data dir (AOF survives it). */
export interface TestRedis {
  url: string;
  port: number;
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
 * For tests: starts `redis-server` (on PATH) on a free port, without snapshots; `aof: true`
 * turns on `appendonly yes` with `appendfsync always`. Rejects when it does not answer PING
 * within 10 s.
 */
export async function startTestRedis(options: { aof?: boolean } = {}): Promise<TestRedis> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'dops-redis-'));
  let child: ChildProcess | undefined;
  const launch = async () => {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--dir', dir];
    args.push('--appendonly', options.aof ? 'yes' : 'no', '--daemonize', 'no');
    if (options.aof) args.push('--appendfsync', 'always');
    child = spawn('redis-server', args, { stdio: 'ignore' });
    const probe = createRedis(`redis://127.0.0.1:${port}`, {
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
    url: `redis://127.0.0.1:${port}`,
    port,
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
