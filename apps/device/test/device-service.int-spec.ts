import * as os from 'node:os';
import { NodeDevices, deviceService } from '@dops/device';
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
import { DeviceFleet, deviceHostService, workerPoolFromConfig, type WorkerPool } from '@dops/worker-pool';

interface Host {
  pool: WorkerPool;
  fleet: DeviceFleet;
  server: TestServer;
  client: deviceV1.DeviceHostServiceClient;
}

/** A worker-owning service as the device service sees it: a real cpu worker behind DeviceHostService. */
async function startHost(service: string): Promise<Host> {
  const pool = workerPoolFromConfig(
    service,
    testWorkerConfig({ maxRestarts: 1 }),
    createLogger({ name: 't', level: 'silent' }),
  );
  await pool.start();
  const fleet = new DeviceFleet(pool, service);
  const server = await startTestServer([deviceHostService(fleet)]);
  const client = createClient(deviceV1.DeviceHostServiceClient, server.address, {
    credentials: testCredentials('device', 'mtls'),
  });
  return { pool, fleet, server, client };
}

const reset = (deviceId: string, over: Partial<deviceV1.ResetDeviceRequest> = {}) =>
  deviceV1.ResetDeviceRequest.fromPartial({ deviceId, ...over });

// The device service end to end over real processes: it starts no worker, and reports and
// controls the workers two other services (standing for inference and postprocessing) own.
describe('device service over the services that own the workers (real workers, CPU)', () => {
  let hosts: Host[];
  let server: TestServer;
  let client: deviceV1.DeviceServiceClient;

  beforeAll(async () => {
    hosts = [await startHost('inference'), await startHost('postprocessing')];
    const node = new NodeDevices(hosts.map((h) => ({ address: h.server.address, client: h.client })));
    server = await startTestServer([deviceService(node)]);
    client = createClient(deviceV1.DeviceServiceClient, server.address, {
      credentials: testCredentials('ops'),
    });
  }, 90_000);

  afterAll(async () => {
    client?.close();
    await server?.stop();
    for (const h of hosts ?? []) {
      h.client.close();
      await h.server.stop();
      await h.pool.stop();
    }
  });

  it('lists the CPU once, with the true core count and memory, and each service’s worker on it', async () => {
    const { devices } = await call(client.listDevices, {});
    expect(devices).toHaveLength(1);
    const cpu = devices[0]!;
    expect(cpu).toMatchObject({
      id: 'cpu:0',
      backend: backendV1.Backend.CPU,
      logicalCores: os.cpus().length,
    });
    expect(cpu.totalMemoryBytes).toBe(os.totalmem());
    expect(cpu.capabilities).toMatchObject({ fp64: true, generatorDevice: 'cpu', torchDevice: 'cpu' });
    expect(cpu.workers.map((w) => [w.service, w.health?.workerPid])).toEqual([
      ['inference', hosts[0]!.pool.list()[0]!.supervisor.health().pid],
      ['postprocessing', hosts[1]!.pool.list()[0]!.supervisor.health().pid],
    ]);
    expect(cpu.health?.workerPid).toBe(hosts[0]!.pool.list()[0]!.supervisor.health().pid);
    expect(cpu.health?.workerState).toBe(backendV1.WorkerState.READY);
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

  it('cordons in every service that owns a worker, and the watch stream sends the state first, then each change', async () => {
    const ac = new AbortController();
    const seen: deviceV1.WatchDevicesResponse[] = [];
    const watching = (async () => {
      for await (const msg of stream(client.watchDevices, {}, { signal: ac.signal })) seen.push(msg);
    })().catch(() => undefined);
    await waitFor(() => seen.length >= 1, { timeoutMs: 5_000 });
    expect(seen[0]).toMatchObject({ reason: 'initial', device: { id: 'cpu:0' } });
    const cordoned = await call(client.cordonDevice, { deviceId: 'cpu:0' });
    expect(cordoned.device?.scheduling).toBe(deviceV1.SchedulingState.CORDONED);
    for (const h of hosts) expect(h.fleet.isCordoned('cpu:0')).toBe(true);
    await waitFor(
      () =>
        seen.some(
          (m) => m.reason === 'scheduling' && m.device?.scheduling === deviceV1.SchedulingState.CORDONED,
        ),
      { timeoutMs: 5_000 },
    );
    const back = await call(client.uncordonDevice, { deviceId: 'cpu:0' });
    expect(back.device?.scheduling).toBe(deviceV1.SchedulingState.SCHEDULABLE);
    for (const h of hosts) expect(h.fleet.isCordoned('cpu:0')).toBe(false);
    ac.abort();
    await watching;
  });

  it('drains: waits for the work running in either service, and says what still runs when the timeout comes first', async () => {
    const work = hosts[1]!.pool
      .get('cpu:0')
      .supervisor.request('diagnostics.steps', { steps: 10, stepMs: 100 });
    const short = await call(client.drainDevice, { deviceId: 'cpu:0', timeoutMs: 100 });
    expect(short).toMatchObject({ drained: false, running: ['postprocessing: 1 job'] });
    expect(short.device?.scheduling).toBe(deviceV1.SchedulingState.CORDONED);
    const full = await call(client.drainDevice, { deviceId: 'cpu:0', timeoutMs: 10_000 });
    expect(full).toMatchObject({ drained: true, running: [] });
    await expect(work).resolves.toEqual({ completed: 10 });
    await call(client.uncordonDevice, { deviceId: 'cpu:0' });
  });

  it('resets the workers that run the device’s work, after draining; refuses while work runs unless forced', async () => {
    const pids = () => hosts.map((h) => h.pool.get('cpu:0').supervisor.health().pid);
    const before = pids();
    const work = hosts[0]!.pool
      .get('cpu:0')
      .supervisor.request('diagnostics.steps', { steps: 20, stepMs: 100 });
    const refused = await call(client.resetDevice, reset('cpu:0', { drainTimeoutMs: 200 })).catch((e) => e);
    expect(refused.code).toBe('FAILED_PRECONDITION');
    expect(refused.message).toMatch(/inference: 1 job/);
    expect(pids()).toEqual(before);
    expect((await call(client.getDevice, { deviceId: 'cpu:0' })).device?.scheduling).toBe(
      deviceV1.SchedulingState.SCHEDULABLE,
    );
    await work;
    const { device } = await call(client.resetDevice, reset('cpu:0'), { deadlineMs: 60_000 });
    const after = pids();
    expect(after[0]).not.toBe(before[0]);
    expect(after[1]).not.toBe(before[1]);
    expect(device?.scheduling).toBe(deviceV1.SchedulingState.SCHEDULABLE);
    expect(device?.workers.map((w) => w.health?.workerState)).toEqual([
      backendV1.WorkerState.READY,
      backendV1.WorkerState.READY,
    ]);
  }, 90_000);

  it('is callable by a stranger: Python grpcio lists the services through reflection and calls ListDevices', async () => {
    const list = await stranger(server.address, 'list');
    expect(list.json).toEqual(
      expect.arrayContaining(['dops.device.v1.DeviceService', 'grpc.health.v1.Health']),
    );
    const devices = (await stranger(server.address, 'call', 'dops.device.v1.DeviceService/ListDevices', '{}'))
      .json as {
      devices: { id: string; backend: string; workers: { service: string }[] }[];
    };
    expect(devices.devices[0]).toMatchObject({ id: 'cpu:0', backend: 'BACKEND_CPU' });
    expect(devices.devices[0]!.workers.map((w) => w.service)).toEqual(['inference', 'postprocessing']);
  }, 60_000);

  it('still answers with the other service’s worker when one service is down; UNAVAILABLE when none answers', async () => {
    const node = new NodeDevices([
      { address: hosts[0]!.server.address, client: hosts[0]!.client },
      {
        address: '127.0.0.1:1',
        client: createClient(deviceV1.DeviceHostServiceClient, '127.0.0.1:1', {
          credentials: testCredentials('device', 'mtls'),
        }),
      },
    ]);
    const devices = await node.list();
    expect(devices[0]!.workers.map((w) => w.service)).toEqual(['inference']);
    const none = new NodeDevices([
      {
        address: '127.0.0.1:1',
        client: createClient(deviceV1.DeviceHostServiceClient, '127.0.0.1:1', {
          credentials: testCredentials('device', 'mtls'),
        }),
      },
    ]);
    await expect(none.list()).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });
});
