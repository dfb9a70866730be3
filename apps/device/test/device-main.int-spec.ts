import { call, createClient } from '@dops/grpc-client';
import { deviceV1 } from '@dops/proto';
import { createLogger } from '@dops/telemetry';
import {
  descendants,
  startServiceProcess,
  startTestServer,
  testCredentials,
  testWorkerConfig,
  type TestServer,
} from '@dops/testing';
import { DeviceFleet, deviceHostService, workerPoolFromConfig, type WorkerPool } from '@dops/worker-pool';

// The app as an operator runs it: `tsx apps/device/src/main.ts`, configured by environment.
describe('device app (main.ts)', () => {
  it('refuses to start on bad config, naming every bad variable', async () => {
    const app = startServiceProcess('device', { DOPS_GRPC_PORT: 'abc', DOPS_DEVICE_HOST_TIMEOUT_MS: 'soon' });
    expect(await app.exited).toBe(2);
    expect(app.output()).toMatch(/DOPS_GRPC_PORT/);
    expect(app.output()).toMatch(/DOPS_DEVICE_HOST_TIMEOUT_MS/);
  }, 60_000);

  describe('over a service that owns a worker', () => {
    let pool: WorkerPool;
    let host: TestServer;
    beforeAll(async () => {
      pool = workerPoolFromConfig(
        'inference',
        testWorkerConfig(),
        createLogger({ name: 't', level: 'silent' }),
      );
      await pool.start();
      host = await startTestServer([deviceHostService(new DeviceFleet(pool, 'inference'))]);
    }, 60_000);
    afterAll(async () => {
      await host?.stop();
      await pool?.stop();
    });

    it('starts no worker of its own, reports the owner’s, and exits 0 on SIGTERM', async () => {
      const app = startServiceProcess('device', { DOPS_DEVICE_HOSTS: host.address });
      try {
        const client = createClient(deviceV1.DeviceServiceClient, await app.listening(), {
          credentials: testCredentials('ops'),
        });
        const { devices } = await call(client.listDevices, {});
        client.close();
        expect(devices[0]!.workers.map((w) => [w.service, w.health?.workerPid])).toEqual([
          ['inference', pool.list()[0]!.supervisor.health().pid],
        ]);
        // No Python (no CUDA context, no model memory) under the device service.
        expect(descendants(app.child.pid!).filter((p) => /python/.test(p.cmdline))).toEqual([]);
        expect(await app.stop()).toBe(0);
      } finally {
        await app.stop();
      }
    }, 120_000);
  });
});
