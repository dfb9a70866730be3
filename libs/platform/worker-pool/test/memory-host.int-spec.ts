import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { call, createClient } from '@dops/grpc-client';
import { backendV1, memoryV1 } from '@dops/proto';
import { createLogger } from '@dops/telemetry';
import {
  startTestServer,
  strangerAs,
  testCredentials,
  testWorkerConfig,
  type TestServer,
} from '@dops/testing';
import { resolvePythonExecutable } from '@dops/worker-supervisor';
import { memoryHostService, WorkerPool, workerPoolFromConfig, type PressureThresholds } from '../src';

const silent = createLogger({ name: 't', level: 'silent' });

async function serve(pool: WorkerPool, service = 'inference', thresholds?: PressureThresholds) {
  await pool.start();
  const server = await startTestServer([memoryHostService(pool, service, { thresholds })]);
  return {
    server,
    // MemoryHostService admits internal callers only: the memory service's own certificate.
    client: createClient(memoryV1.MemoryHostServiceClient, server.address, {
      credentials: testCredentials('memory', 'mtls'),
    }),
  };
}

describe('MemoryHostService (real worker, CPU)', () => {
  let pool: WorkerPool;
  let server: TestServer;
  let client: memoryV1.MemoryHostServiceClient;

  beforeAll(async () => {
    pool = workerPoolFromConfig('inference', testWorkerConfig(), silent);
    ({ server, client } = await serve(pool, 'inference'));
  }, 90_000);

  afterAll(async () => {
    client?.close();
    await server?.stop();
    await pool?.stop();
  });

  it('reports its own worker, labelled with the owning service, and the CPU device from the OS', async () => {
    const { snapshot } = await call(client.getMemory, {});
    const s = snapshot!;
    expect(s.system!.totalBytes).toBe(os.totalmem());
    expect(s.system!.availableBytes).toBeGreaterThan(0);
    expect(s.system!.availableBytes).toBeLessThanOrEqual(os.totalmem());
    const pid = pool.list()[0]!.supervisor.health().pid;
    expect(s.workers).toEqual([expect.objectContaining({ pid, deviceId: 'cpu:0', service: 'inference' })]);
    // A Python process with torch loaded holds tens of MB at least.
    expect(s.workers[0]!.rssBytes).toBeGreaterThan(20 * 1024 * 1024);
    expect(s.system!.workersRssBytes).toBe(s.workers[0]!.rssBytes);
    const [cpu] = s.devices;
    expect(cpu).toMatchObject({
      deviceId: 'cpu:0',
      backend: backendV1.Backend.CPU,
      source: 'os',
      totalBytes: os.totalmem(),
      workers: [expect.objectContaining({ pid, service: 'inference' })],
    });
    expect(cpu!.usedBytes + cpu!.freeBytes).toBe(cpu!.totalBytes);
    expect(cpu!.pressure).not.toBe(memoryV1.PressureLevel.UNSPECIFIED);
  });

  it('cleans up: the worker collects garbage and reports bytes freed per device', async () => {
    const all = await call(client.cleanupMemory, { deviceId: '' });
    expect(all.devices).toEqual([expect.objectContaining({ deviceId: 'cpu:0' })]);
    expect(all.devices[0]!.rssBeforeBytes).toBeGreaterThan(0);
    expect(all.freedBytes).toBe(all.devices[0]!.freedBytes);
    const one = await call(client.cleanupMemory, { deviceId: 'cpu:0' });
    expect(one.devices.map((d) => d.deviceId)).toEqual(['cpu:0']);
    const missing = await call(client.cleanupMemory, { deviceId: 'cpu:3' }).catch((e) => e);
    expect(missing.code).toBe('NOT_FOUND');
    const bad = await call(client.cleanupMemory, { deviceId: '../etc' }).catch((e) => e);
    expect(bad.violations[0].field).toBe('device_id');
  });

  it('admits internal callers only (an operator is refused), and a service through reflection', async () => {
    const asOperator = createClient(memoryV1.MemoryHostServiceClient, server.address, {
      credentials: testCredentials('ops'),
    });
    try {
      await expect(call(asOperator.getMemory, {})).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
    } finally {
      asOperator.close();
    }
    const r = await strangerAs(
      { mtls: 'memory' },
      server.address,
      'call',
      'dops.memory.v1.MemoryHostService/GetMemory',
      '{}',
    );
    expect(r.exitCode).toBe(0);
    expect((r.json as { snapshot: { workers: { service: string }[] } }).snapshot.workers[0]!.service).toBe(
      'inference',
    );
  }, 60_000);
});

describe('host memory pressure levels come from the given thresholds', () => {
  it('says CRITICAL when the thresholds are below what is in use', async () => {
    const pool = workerPoolFromConfig('postprocessing', testWorkerConfig(), silent);
    const { server, client } = await serve(pool, 'postprocessing', { high: 0.000001, critical: 0.000002 });
    try {
      const { snapshot } = await call(client.getMemory, {});
      expect(snapshot!.system!.pressure).toBe(memoryV1.PressureLevel.CRITICAL);
      expect(snapshot!.devices[0]!.pressure).toBe(memoryV1.PressureLevel.CRITICAL);
      expect(snapshot!.workers[0]!.service).toBe('postprocessing');
    } finally {
      client.close();
      await server.stop();
      await pool.stop();
    }
  }, 90_000);
});

describe.each(['garbage', 'oversized'])('a worker whose memory.stats reply is %s', (mode) => {
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
