import * as os from 'node:os';
import { DeviceFleet, deviceService } from '@dops/device';
import type { DopsError } from '@dops/errors';
import { call, createClient, stream } from '@dops/grpc-client';
import { backendV1, deviceV1 } from '@dops/proto';
import {
  startTestServer,
  stranger,
  testCredentials,
  type TestServer,
  testWorkerConfig,
  waitFor,
} from '@dops/testing';
import { createLogger } from '@dops/telemetry';
import { reportWorkerHealth, workerPoolFromConfig, type WorkerPool } from '@dops/worker-pool';

// The device service end to end: a real gRPC server on port 0 over a real Python worker
// probing the real CPU of this machine.
describe('device service (real worker, CPU)', () => {
  let pool: WorkerPool;
  let server: TestServer;
  let client: deviceV1.DeviceServiceClient;

  beforeAll(async () => {
    pool = workerPoolFromConfig(
      'device-test',
      testWorkerConfig({ maxRestarts: 1 }),
      createLogger({ name: 't', level: 'silent' }),
    );
    await pool.start();
    const service = deviceService(new DeviceFleet(pool));
    server = await startTestServer([service]);
    reportWorkerHealth(pool, server.server.health, service.serviceName);
    client = createClient(deviceV1.DeviceServiceClient, server.address, {
      credentials: testCredentials('ops'),
    });
  }, 90_000);

  afterAll(async () => {
    client?.close();
    await server?.stop();
    await pool?.stop();
  });

  it('lists the CPU with its true core count, memory and probed capabilities', async () => {
    const { devices } = await call(client.listDevices, {});
    expect(devices).toHaveLength(1);
    const cpu = devices[0]!;
    expect(cpu.id).toBe('cpu:0');
    expect(cpu.backend).toBe(backendV1.Backend.CPU);
    expect(cpu.logicalCores).toBe(os.cpus().length);
    expect(cpu.cores).toBeGreaterThanOrEqual(1);
    expect(cpu.cores).toBeLessThanOrEqual(cpu.logicalCores);
    expect(cpu.totalMemoryBytes).toBe(os.totalmem());
    expect(cpu.capabilities).toMatchObject({ fp64: true, generatorDevice: 'cpu', torchDevice: 'cpu' });
    expect(cpu.health?.workerState).toBe(backendV1.WorkerState.READY);
    expect(cpu.health?.workerPid).toBe(pool.list()[0]!.supervisor.health().pid);
  });

  it('reports heartbeats in the device health', async () => {
    await waitFor(
      async () =>
        (await call(client.getDevice, { deviceId: 'cpu:0' })).device?.health?.lastHeartbeatTime !== undefined,
      {
        timeoutMs: 10_000,
      },
    );
    const { device } = await call(client.getDevice, { deviceId: 'cpu:0' });
    expect(Date.now() - device!.health!.lastHeartbeatTime!.getTime()).toBeLessThan(5_000);
  });

  it('answers NOT_FOUND for an unknown device and INVALID_ARGUMENT naming device_id for a malformed one', async () => {
    const unknown = await call(client.getDevice, { deviceId: 'cpu:9' }).catch((e) => e);
    expect(unknown.code).toBe('NOT_FOUND');
    for (const deviceId of ['', 'not a device id', 'x'.repeat(300)]) {
      const bad = await call(client.cordonDevice, { deviceId }).catch((e) => e);
      expect(bad.code).toBe('INVALID_ARGUMENT');
      expect(bad.violations[0].field).toBe('device_id');
    }
    const tooLong = await call(client.drainDevice, { deviceId: 'cpu:0', timeoutMs: 4_000_000 }).catch(
      (e) => e,
    );
    expect(tooLong.violations[0].field).toBe('timeout_ms');
  });

  it('cordons and uncordons, and the watch stream sends the current state first, then each change', async () => {
    const ac = new AbortController();
    const seen: deviceV1.WatchDevicesResponse[] = [];
    const watching = (async () => {
      for await (const msg of stream(client.watchDevices, {}, { signal: ac.signal })) seen.push(msg);
    })().catch(() => undefined);
    await waitFor(() => seen.length >= 1, { timeoutMs: 5_000 });
    expect(seen[0]).toMatchObject({ reason: 'initial', device: { id: 'cpu:0' } });

    const cordoned = await call(client.cordonDevice, { deviceId: 'cpu:0' });
    expect(cordoned.device?.scheduling).toBe(deviceV1.SchedulingState.CORDONED);
    await waitFor(
      () =>
        seen.some(
          (m) => m.reason === 'scheduling' && m.device?.scheduling === deviceV1.SchedulingState.CORDONED,
        ),
      {
        timeoutMs: 5_000,
      },
    );
    const back = await call(client.uncordonDevice, { deviceId: 'cpu:0' });
    expect(back.device?.scheduling).toBe(deviceV1.SchedulingState.SCHEDULABLE);
    ac.abort();
    await watching;
  });

  it('drains: waits for running work to finish, and says so when the timeout comes first', async () => {
    const worker = pool.get('cpu:0').supervisor;
    const running = worker.request('diagnostics.steps', { steps: 10, stepMs: 100 });
    const short = await call(client.drainDevice, { deviceId: 'cpu:0', timeoutMs: 100 });
    expect(short.drained).toBe(false);
    expect(short.device?.scheduling).toBe(deviceV1.SchedulingState.CORDONED);
    const full = await call(client.drainDevice, { deviceId: 'cpu:0', timeoutMs: 10_000 });
    expect(full.drained).toBe(true);
    await expect(running).resolves.toEqual({ completed: 10 });
    await call(client.uncordonDevice, { deviceId: 'cpu:0' });
  });

  it('resets the worker: a new process probes the device again', async () => {
    const before = pool.get('cpu:0').supervisor.health();
    const { device } = await call(client.resetDevice, { deviceId: 'cpu:0' });
    expect(device?.health?.workerPid).not.toBe(before.pid);
    expect(device?.health?.restarts).toBe(before.restarts + 1);
    expect(device?.health?.workerState).toBe(backendV1.WorkerState.READY);
  }, 60_000);

  it('is callable by a stranger: Python grpcio lists the services through reflection and calls ListDevices', async () => {
    const list = await stranger(server.address, 'list');
    expect(list.json).toEqual(
      expect.arrayContaining(['dops.device.v1.DeviceService', 'grpc.health.v1.Health']),
    );
    const health = await stranger(server.address, 'health', 'dops.device.v1.DeviceService');
    expect(health.json).toEqual({ status: 'SERVING' });
    const devices = (await stranger(server.address, 'call', 'dops.device.v1.DeviceService/ListDevices', '{}'))
      .json as {
      devices: { id: string; backend: string }[];
    };
    expect(devices.devices[0]).toMatchObject({ id: 'cpu:0', backend: 'BACKEND_CPU' });
    const missing = await stranger(
      server.address,
      'call',
      'dops.device.v1.DeviceService/GetDevice',
      '{"deviceId":"cpu:5"}',
    );
    expect(missing).toEqual({
      exitCode: 1,
      json: { code: 'NOT_FOUND', details: "device 'cpu:5' not found" },
    });
  }, 60_000);

  it('goes NOT_SERVING when the worker crash-loops, and back to SERVING after a reset', async () => {
    const worker = pool.get('cpu:0').supervisor;
    // maxRestarts 1: two kills within the window hit the crash-loop limit.
    for (let i = 0; i < 2; i += 1) {
      await waitFor(() => worker.state === 'ready', { timeoutMs: 30_000 });
      process.kill(worker.health().pid!, 'SIGKILL');
      await waitFor(() => worker.state !== 'ready', { timeoutMs: 5_000 });
    }
    await waitFor(() => worker.state === 'failed', { timeoutMs: 30_000 });
    expect((await stranger(server.address, 'health', 'dops.device.v1.DeviceService')).json).toEqual({
      status: 'NOT_SERVING',
    });
    const { device } = await call(client.getDevice, { deviceId: 'cpu:0' });
    expect(device?.health?.workerState).toBe(backendV1.WorkerState.FAILED);
    expect(device?.health?.lastError).toMatch(/exit|signal|SIGKILL/i);

    await call(client.resetDevice, { deviceId: 'cpu:0' }, { deadlineMs: 60_000 });
    expect((await stranger(server.address, 'health', 'dops.device.v1.DeviceService')).json).toEqual({
      status: 'SERVING',
    });
  }, 120_000);

  it('keeps serving when a request fails inside the worker: the error reaches the client with its code', async () => {
    const err = (await pool
      .get('cpu:0')
      .supervisor.request('diagnostics.steps', { steps: 0, stepMs: 1 })
      .catch((e: unknown) => e)) as DopsError;
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.violations[0].field).toBe('steps');
    expect((await call(client.listDevices, {})).devices).toHaveLength(1);
  });
});
