import { readFileSync } from 'node:fs';
import { call, createClient, stream } from '@dops/grpc-client';
import { memoryReservationsV1, memoryV1 } from '@dops/proto';
import { createLogger } from '@dops/telemetry';
import { collect, startTestServer, testCredentials, testWorkerConfig, type TestServer } from '@dops/testing';
import { memoryHostService, workerPoolFromConfig } from '@dops/worker-pool';
import {
  DeviceCapacities,
  memoryService,
  NodeMemory,
  ReservationLedger,
  reservationService,
  type MemoryHost,
} from '../src';

const silent = createLogger({ name: 't', level: 'silent' });
const memTotalBytes = () =>
  Number(/^MemTotal:\s+(\d+) kB$/m.exec(readFileSync('/proc/meminfo', 'utf8'))![1]) * 1024;

/** One worker-owning service as the node runs it: its own real CPU worker, serving MemoryHostService. */
async function startHost(service: 'inference' | 'postprocessing') {
  const pool = workerPoolFromConfig(service, testWorkerConfig(), silent);
  await pool.start();
  const server = await startTestServer([memoryHostService(pool, service)]);
  const host: MemoryHost = {
    address: server.address,
    // The memory service's own certificate: the hosts admit internal callers only.
    client: createClient(memoryV1.MemoryHostServiceClient, server.address, {
      credentials: testCredentials('memory', 'mtls'),
    }),
  };
  return { pool, server, host, pid: () => pool.list()[0]!.supervisor.health().pid };
}

describe('the node memory service over two hosts (real workers, CPU)', () => {
  let inference: Awaited<ReturnType<typeof startHost>>;
  let postprocessing: Awaited<ReturnType<typeof startHost>>;
  let node: TestServer;
  let client: memoryV1.MemoryServiceClient;
  let reservations: memoryReservationsV1.MemoryReservationServiceClient;
  const warnings: string[] = [];

  beforeAll(async () => {
    [inference, postprocessing] = await Promise.all([startHost('inference'), startHost('postprocessing')]);
    const memory = new NodeMemory([inference.host, postprocessing.host], {
      logger: { warn: (_fields, message) => warnings.push(message) },
    });
    const capacities = new DeviceCapacities(async () => (await memory.snapshot()).devices, {
      reservableFraction: 0.5,
    });
    node = await startTestServer([
      memoryService(memory, 200),
      reservationService(new ReservationLedger({ capacityOf: capacities.capacityOf }), {
        beforeReserve: (id) => capacities.prepare(id),
      }),
    ]);
    client = createClient(memoryV1.MemoryServiceClient, node.address, {
      credentials: testCredentials('ops'),
    });
    reservations = createClient(memoryReservationsV1.MemoryReservationServiceClient, node.address, {
      credentials: testCredentials('model', 'mtls'),
    });
  }, 120_000);

  afterAll(async () => {
    client?.close();
    reservations?.close();
    await node?.stop();
    for (const h of [inference, postprocessing]) {
      h?.host.client.close();
      await h?.server.stop();
      await h?.pool.stop();
    }
  });

  it('lists both services’ workers with their pids, on one merged device, and system RAM from the OS', async () => {
    const { snapshot } = await call(client.getMemory, {});
    const s = snapshot!;
    const both = [
      expect.objectContaining({ service: 'inference', pid: inference.pid(), deviceId: 'cpu:0' }),
      expect.objectContaining({ service: 'postprocessing', pid: postprocessing.pid(), deviceId: 'cpu:0' }),
    ];
    expect(s.workers).toEqual(both);
    expect(s.system!.totalBytes).toBe(memTotalBytes());
    expect(s.system!.availableBytes).toBeGreaterThan(0);
    expect(s.system!.workersRssBytes).toBe(s.workers[0]!.rssBytes + s.workers[1]!.rssBytes);
    expect(s.devices).toHaveLength(1);
    expect(s.devices[0]).toMatchObject({ deviceId: 'cpu:0', source: 'os', workers: both });
    expect(s.devices[0]!.usedBytes + s.devices[0]!.freeBytes).toBe(s.devices[0]!.totalBytes);
  });

  it('streams merged snapshots at the asked interval and refuses an interval out of range, naming interval_ms', async () => {
    const started = Date.now();
    const snaps = await collect(stream(client.watchMemory, { intervalMs: 150 }), 3);
    expect(snaps.map((m) => m.snapshot!.workers.length)).toEqual([2, 2, 2]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    const err = await collect(stream(client.watchMemory, { intervalMs: 5 }), 1).catch((e) => e);
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.violations[0].field).toBe('interval_ms');
  });

  it('fans CleanupMemory out to both hosts: one entry per device, summed over their workers', async () => {
    const { snapshot } = await call(client.getMemory, {});
    const largest = Math.max(...snapshot!.workers.map((w) => w.rssBytes));
    const all = await call(client.cleanupMemory, { deviceId: '' });
    expect(all.devices.map((d) => d.deviceId)).toEqual(['cpu:0']);
    // Two workers of the same program: the sum is about twice either one.
    expect(all.devices[0]!.rssBeforeBytes).toBeGreaterThan(1.5 * largest);
    expect(all.freedBytes).toBe(all.devices[0]!.freedBytes);
    const one = await call(client.cleanupMemory, { deviceId: 'cpu:0' });
    expect(one.devices[0]!.rssBeforeBytes).toBeGreaterThan(1.5 * largest);
    const missing = await call(client.cleanupMemory, { deviceId: 'cpu:3' }).catch((e) => e);
    expect(missing.code).toBe('NOT_FOUND');
    const bad = await call(client.cleanupMemory, { deviceId: '../etc' }).catch((e) => e);
    expect(bad.violations[0].field).toBe('device_id');
  });

  it('reserves against the device totals the hosts report, fetched on the first reserve', async () => {
    const { snapshot } = await call(client.getMemory, {});
    const total = snapshot!.devices[0]!.totalBytes;
    const granted = await call(reservations.reserve, {
      deviceId: 'cpu:0',
      bytes: 1024,
      modelId: 'm',
      purpose: 'model-load',
    });
    expect(granted.granted).toMatchObject({ deviceId: 'cpu:0', bytes: 1024 });
    const listed = await call(reservations.listReservations, { deviceId: 'cpu:0' });
    expect(listed.devices[0]!.capacityBytes).toBe(Math.floor(total * 0.5));
    const unknown = await call(reservations.reserve, {
      deviceId: 'cpu:7',
      bytes: 1,
      modelId: '',
      purpose: '',
    }).catch((e) => e);
    expect(unknown.code).toBe('NOT_FOUND');
  });

  it('answers with the other host’s workers while one host is down, and UNAVAILABLE once none answers', async () => {
    await postprocessing.server.stop();
    const { snapshot } = await call(client.getMemory, {});
    expect(snapshot!.workers).toEqual([
      expect.objectContaining({ service: 'inference', pid: inference.pid() }),
    ]);
    expect(snapshot!.devices[0]!.workers.map((w) => w.service)).toEqual(['inference']);
    expect(warnings.some((w) => w.includes(postprocessing.host.address))).toBe(true);
    const cleaned = await call(client.cleanupMemory, { deviceId: 'cpu:0' });
    expect(cleaned.devices.map((d) => d.deviceId)).toEqual(['cpu:0']);

    await inference.server.stop();
    const err = await call(client.getMemory, {}).catch((e) => e);
    expect(err).toMatchObject({ code: 'UNAVAILABLE', retryable: true });
    expect(err.message).toContain(inference.host.address);
    await expect(call(client.cleanupMemory, { deviceId: '' })).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    // A device already known keeps its capacity: reservations go on without the hosts.
    const again = await call(reservations.reserve, {
      deviceId: 'cpu:0',
      bytes: 2048,
      modelId: 'm',
      purpose: '',
    });
    expect(again.granted).toMatchObject({ bytes: 2048 });
  }, 30_000);
});
