import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { call, createClient, stream } from '@dops/grpc-client';
import { MemoryMonitor, memoryService, type PressureThresholds } from '@dops/memory';
import { backendV1, memoryV1 } from '@dops/proto';
import {
  collect,
  startTestServer,
  stranger,
  testCredentials,
  type TestServer,
  testWorkerConfig,
} from '@dops/testing';
import { createLogger } from '@dops/telemetry';
import { WorkerPool, workerPoolFromConfig } from '@dops/worker-pool';
import { resolvePythonExecutable } from '@dops/worker-supervisor';

const silent = createLogger({ name: 't', level: 'silent' });

async function serve(pool: WorkerPool, thresholds?: PressureThresholds) {
  await pool.start();
  const server = await startTestServer([memoryService(new MemoryMonitor(pool, { thresholds }), 200)]);
  return {
    server,
    client: createClient(memoryV1.MemoryServiceClient, server.address, {
      credentials: testCredentials('ops'),
    }),
  };
}

describe('memory service (real worker, CPU)', () => {
  let pool: WorkerPool;
  let server: TestServer;
  let client: memoryV1.MemoryServiceClient;

  beforeAll(async () => {
    pool = workerPoolFromConfig('memory-test', testWorkerConfig(), silent);
    ({ server, client } = await serve(pool));
  }, 90_000);

  afterAll(async () => {
    client?.close();
    await server?.stop();
    await pool?.stop();
  });

  it('reports system RAM, the worker RSS and the CPU device from the OS', async () => {
    const { snapshot } = await call(client.getMemory, {});
    const s = snapshot!;
    expect(s.system!.totalBytes).toBe(os.totalmem());
    expect(s.system!.availableBytes).toBeGreaterThan(0);
    expect(s.system!.availableBytes).toBeLessThanOrEqual(os.totalmem());
    const pid = pool.list()[0]!.supervisor.health().pid;
    expect(s.workers).toEqual([expect.objectContaining({ pid, deviceId: 'cpu:0' })]);
    // A Python process with torch loaded holds tens of MB at least.
    expect(s.workers[0]!.rssBytes).toBeGreaterThan(20 * 1024 * 1024);
    expect(s.system!.workersRssBytes).toBe(s.workers[0]!.rssBytes);
    const [cpu] = s.devices;
    expect(cpu).toMatchObject({
      deviceId: 'cpu:0',
      backend: backendV1.Backend.CPU,
      source: 'os',
      totalBytes: os.totalmem(),
    });
    expect(cpu!.usedBytes + cpu!.freeBytes).toBe(cpu!.totalBytes);
    expect(cpu!.pressure).not.toBe(memoryV1.PressureLevel.UNSPECIFIED);
  });

  it('streams snapshots at the asked interval and refuses an interval out of range, naming interval_ms', async () => {
    const started = Date.now();
    const snaps = await collect(stream(client.watchMemory, { intervalMs: 150 }), 3);
    expect(snaps).toHaveLength(3);
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    const err = await collect(stream(client.watchMemory, { intervalMs: 5 }), 1).catch((e) => e);
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.violations[0].field).toBe('interval_ms');
  });

  it('cleans up: the worker collects garbage and reports bytes freed per device', async () => {
    const all = await call(client.cleanupMemory, { deviceId: '' });
    expect(all.devices).toHaveLength(1);
    expect(all.devices[0]).toMatchObject({ deviceId: 'cpu:0' });
    expect(all.devices[0]!.rssBeforeBytes).toBeGreaterThan(0);
    expect(all.freedBytes).toBe(all.devices[0]!.freedBytes);
    const missing = await call(client.cleanupMemory, { deviceId: 'cpu:3' }).catch((e) => e);
    expect(missing.code).toBe('NOT_FOUND');
    const bad = await call(client.cleanupMemory, { deviceId: '../etc' }).catch((e) => e);
    expect(bad.violations[0].field).toBe('device_id');
  });

  it('is callable by a stranger through reflection', async () => {
    const r = await stranger(server.address, 'call', 'dops.memory.v1.MemoryService/GetMemory', '{}');
    expect(r.exitCode).toBe(0);
    expect((r.json as { snapshot: { devices: { deviceId: string }[] } }).snapshot.devices[0]!.deviceId).toBe(
      'cpu:0',
    );
  }, 60_000);
});

describe('memory pressure levels come from the configured thresholds', () => {
  it('says CRITICAL when the thresholds are below what is in use', async () => {
    const pool = workerPoolFromConfig('memory-pressure', testWorkerConfig(), silent);
    const { server, client } = await serve(pool, { high: 0.000001, critical: 0.000002 });
    try {
      const { snapshot } = await call(client.getMemory, {});
      expect(snapshot!.system!.pressure).toBe(memoryV1.PressureLevel.CRITICAL);
      expect(snapshot!.devices[0]!.pressure).toBe(memoryV1.PressureLevel.CRITICAL);
    } finally {
      client.close();
      await server.stop();
      await pool.stop();
    }
  }, 90_000);
});

describe.each(['garbage', 'oversized'])('a worker whose reply is %s', (mode) => {
  it('fails the call UNAVAILABLE (retryable), restarts the worker, and the next call succeeds', async () => {
    const marker = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'dops-mem-')), 'answered');
    const pool = new WorkerPool({
      name: 'memory-fixture',
      backend: 'cpu',
      logger: silent,
      supervisor: {
        command: resolvePythonExecutable(),
        args: [path.join(__dirname, 'fixtures', 'misbehaving_memory_worker.py')],
        env: { ...process.env, FIXTURE_MODE: mode, FIXTURE_MARKER: marker },
        restartInitialDelayMs: 50,
      },
    });
    const { server, client } = await serve(pool);
    try {
      const firstPid = pool.list()[0]!.supervisor.health().pid;
      const err = await call(client.getMemory, {}).catch((e) => e);
      expect(err.code).toBe('UNAVAILABLE');
      expect(err.retryable).toBe(true);
      const { snapshot } = await call(client.getMemory, {}, { deadlineMs: 20_000 });
      expect(snapshot!.devices[0]!.usedBytes).toBe(600);
      const health = pool.list()[0]!.supervisor.health();
      expect(health.pid).not.toBe(firstPid);
      expect(health.restarts).toBe(1);
    } finally {
      client.close();
      await server.stop();
      await pool.stop();
    }
  }, 60_000);
});
