import { call, createClient } from '@dops/grpc-client';
import { deviceV1 } from '@dops/proto';
import { startServiceProcess, testCredentials, waitFor } from '@dops/testing';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// The app as an operator runs it: `tsx apps/device/src/main.ts`, configured by environment.
describe('device app (main.ts)', () => {
  it('refuses to start on bad config, naming every bad variable', async () => {
    const app = startServiceProcess('device', { DOPS_GRPC_PORT: 'abc', DOPS_BACKEND: 'tpu' });
    expect(await app.exited).toBe(2);
    expect(app.output()).toMatch(/DOPS_GRPC_PORT/);
    expect(app.output()).toMatch(/DOPS_BACKEND/);
  }, 60_000);

  it('serves on the port it logs, and on SIGTERM stops its worker and exits 0', async () => {
    const app = startServiceProcess('device');
    try {
      const client = createClient(deviceV1.DeviceServiceClient, await app.listening(), {
        credentials: testCredentials('ops'),
      });
      const { devices } = await call(client.listDevices, {});
      client.close();
      const workerPid = devices[0]!.health!.workerPid;
      expect(alive(workerPid)).toBe(true);
      expect(await app.stop()).toBe(0);
      await waitFor(() => !alive(workerPid), { timeoutMs: 5_000 });
    } finally {
      await app.stop();
    }
  }, 120_000);
});
