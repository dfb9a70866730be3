import { call, createClient } from '@dops/grpc-client';
import { memoryReservationsV1, memoryV1 } from '@dops/proto';
import { createLogger } from '@dops/telemetry';
import {
  descendants,
  startServiceProcess,
  startTestServer,
  testCredentials,
  testWorkerConfig,
  type TestServer,
} from '@dops/testing';
import { memoryHostService, workerPoolFromConfig, type WorkerPool } from '@dops/worker-pool';

const silent = createLogger({ name: 't', level: 'silent' });

// The app as an operator runs it: `tsx apps/memory/src/main.ts`, configured by environment.
describe('memory app (main.ts)', () => {
  it('refuses to start on a bad host list, naming the variable', async () => {
    const app = startServiceProcess('memory', { DOPS_MEMORY_HOSTS: 'inference' });
    expect(await app.exited).toBe(2);
    expect(app.output()).toMatch(/DOPS_MEMORY_HOSTS/);
  }, 60_000);

  describe('over the two services that own workers', () => {
    const hosts: { pool: WorkerPool; server: TestServer }[] = [];
    beforeAll(async () => {
      for (const service of ['inference', 'postprocessing']) {
        const pool = workerPoolFromConfig(service, testWorkerConfig(), silent);
        await pool.start();
        hosts.push({ pool, server: await startTestServer([memoryHostService(pool, service)]) });
      }
    }, 120_000);
    afterAll(async () => {
      for (const h of hosts) {
        await h.server.stop();
        await h.pool.stop();
      }
    });

    it('starts no worker of its own, reports both owners’ workers, reserves on their devices, exits 0 on SIGTERM', async () => {
      const app = startServiceProcess('memory', {
        DOPS_MEMORY_HOSTS: hosts.map((h) => h.server.address).join(','),
      });
      try {
        const address = await app.listening();
        const memory = createClient(memoryV1.MemoryServiceClient, address, {
          credentials: testCredentials('ops'),
        });
        const reservations = createClient(memoryReservationsV1.MemoryReservationServiceClient, address, {
          credentials: testCredentials('model', 'mtls'),
        });
        try {
          const { snapshot } = await call(memory.getMemory, {});
          const pid = (i: number) => hosts[i]!.pool.list()[0]!.supervisor.health().pid;
          expect(snapshot!.workers.map((w) => [w.service, w.pid])).toEqual([
            ['inference', pid(0)],
            ['postprocessing', pid(1)],
          ]);
          const granted = await call(reservations.reserve, {
            deviceId: 'cpu:0',
            bytes: 1024,
            modelId: 'm',
            purpose: 'model-load',
          });
          expect(granted.granted?.deviceId).toBe('cpu:0');
        } finally {
          memory.close();
          reservations.close();
        }
        // No Python (no CUDA context, no model memory) under the memory service.
        expect(descendants(app.child.pid!).filter((p) => /python|dops_worker/.test(p.cmdline))).toEqual([]);
        expect(await app.stop()).toBe(0);
      } finally {
        await app.stop();
      }
    }, 120_000);
  });
});
