import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { call, createClient } from '@dops/grpc-client';
import { deviceV1 } from '@dops/proto';
import { waitFor } from '@dops/testing';

// The app as an operator runs it: `tsx apps/device/src/main.ts`, configured by environment.
const ROOT = path.resolve(__dirname, '../../..');
const TSX = path.join(ROOT, 'node_modules/.bin/tsx');

function startApp(env: Record<string, string>): { child: ChildProcess; output: () => string } {
  let out = '';
  const child = spawn(TSX, ['apps/device/src/main.ts'], {
    cwd: ROOT,
    env: { ...process.env, DOPS_BACKEND: 'cpu', DOPS_GRPC_HOST: '127.0.0.1', DOPS_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return { child, output: () => out };
}

function exitOf(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('device app (main.ts)', () => {
  it('refuses to start on bad config, naming every bad variable', async () => {
    const { child, output } = startApp({ DOPS_GRPC_PORT: 'abc', DOPS_BACKEND: 'tpu' });
    expect(await exitOf(child)).toBe(2);
    expect(output()).toMatch(/DOPS_GRPC_PORT/);
    expect(output()).toMatch(/DOPS_BACKEND/);
  }, 60_000);

  it('serves on the port it logs, and on SIGTERM stops its worker and exits 0', async () => {
    const { child, output } = startApp({ DOPS_GRPC_PORT: '0' });
    const exited = exitOf(child);
    try {
      await waitFor(() => /"msg":"device service listening/.test(output()), { timeoutMs: 90_000 });
      const line = output()
        .split('\n')
        .find((l) => l.includes('device service listening'))!;
      const port = (JSON.parse(line) as { port: number }).port;
      const client = createClient(deviceV1.DeviceServiceClient, `127.0.0.1:${port}`);
      const { devices } = await call(client.listDevices, {});
      client.close();
      const workerPid = devices[0]!.health!.workerPid;
      expect(alive(workerPid)).toBe(true);

      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      await waitFor(() => !alive(workerPid), { timeoutMs: 5_000 });
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }, 120_000);
});
