import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { waitFor } from './async-helpers';
import { devSecurityEnv } from '@dops/security';

const ROOT = path.resolve(__dirname, '../../../..');

export interface ServiceProcess {
  child: ChildProcess;
  /** Everything the process wrote to stdout and stderr so far. */
  output(): string;
  /** Resolves with the exit code once the process has exited. */
  exited: Promise<number | null>;
  /** `127.0.0.1:<port>` once `listening()` resolved. */
  address: string;
  /** The /metrics port once `listening()` resolved (undefined when metrics are off). */
  metricsPort: number | undefined;
  /** The admin (queue dashboard) port once `listening()` resolved, for processing. */
  adminPort: number | undefined;
  /** Waits for the service's "<name> service listening" log line; rejects after `timeoutMs`. */
  listening(timeoutMs?: number): Promise<string>;
  /** SIGTERM, then the exit code (SIGKILL after `timeoutMs`). */
  stop(timeoutMs?: number): Promise<number | null>;
}

/**
 * Runs `apps/<app>/src/main.ts` as an operator would (tsx, configured by environment, port 0 by
 * default, CPU backend), for tests of the real process: start-up, signals, clients.
 */
export function startServiceProcess(app: string, env: Record<string, string> = {}): ServiceProcess {
  let out = '';
  const child = spawn(path.join(ROOT, 'node_modules/.bin/tsx'), [`apps/${app}/src/main.ts`], {
    cwd: ROOT,
    env: {
      ...process.env,
      DOPS_BACKEND: 'cpu',
      DOPS_GRPC_HOST: '127.0.0.1',
      DOPS_GRPC_PORT: '0',
      // Many services of one kind run at once in the tests: every port is a free one.
      DOPS_METRICS_HOST: '127.0.0.1',
      DOPS_METRICS_PORT: '0',
      DOPS_ADMIN_HOST: '127.0.0.1',
      DOPS_ADMIN_PORT: '0',
      DOPS_LOG_LEVEL: 'info',
      // The service's own development identity (mTLS) and the token file: the real auth path.
      ...devSecurityEnv(app),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const proc: ServiceProcess = {
    child,
    output: () => out,
    exited,
    address: '',
    metricsPort: undefined,
    adminPort: undefined,
    async listening(timeoutMs = 90_000) {
      const marker = `"msg":"${app} service listening`;
      await waitFor(() => out.includes(marker) || child.exitCode !== null, {
        timeoutMs,
        description: marker,
      });
      const line = out.split('\n').find((l) => l.includes(marker));
      if (!line) throw new Error(`${app} exited before listening:\n${out}`);
      const fields = JSON.parse(line) as { port: number; metricsPort?: number; adminPort?: number };
      proc.address = `127.0.0.1:${fields.port}`;
      proc.metricsPort = fields.metricsPort;
      proc.adminPort = fields.adminPort;
      return proc.address;
    },
    async stop(timeoutMs = 30_000) {
      if (child.exitCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
  };
  return proc;
}
