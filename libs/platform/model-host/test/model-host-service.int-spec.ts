import { call, createClient } from '@dops/grpc-client';
import { modelHostV1, modelV1 } from '@dops/proto';
import { startTestServer, type TestServer } from '@dops/testing';
import { WorkerPool } from '@dops/worker-pool';
import { silentLogger } from '@dops/worker-supervisor';
import { ModelHost, modelHostService } from '../src/index';

// Validation happens before any worker is asked, so an unstarted pool (no devices) is enough here;
// loads through a real worker are tested in libs/model/test/model-host-worker.int-spec.ts.
describe('ModelHostService edge validation (real server, pool without workers)', () => {
  let server: TestServer;
  let client: modelHostV1.ModelHostServiceClient;
  const pool = new WorkerPool({
    name: 'host-test',
    backend: 'cpu',
    logger: silentLogger,
    supervisor: { command: 'python3' },
  });
  const load = (over: Partial<modelHostV1.ModelHostServiceLoadModelRequest>) =>
    call(client.loadModel, {
      modelId: 'm',
      path: '/models/a.safetensors',
      deviceId: 'cpu:0',
      tier: modelV1.Tier.RAM,
      configDir: '',
      allowUnsafePickle: false,
      ...over,
    });

  beforeAll(async () => {
    server = await startTestServer([modelHostService(new ModelHost(pool))]);
    client = createClient(modelHostV1.ModelHostServiceClient, server.address);
  });
  afterAll(async () => {
    client.close();
    await server.stop();
  });

  it.each([
    [{ modelId: '' }, 'model_id'],
    [{ path: '' }, 'path'],
    [{ path: 'models/a.safetensors' }, 'path'],
    [{ tier: modelV1.Tier.UNSPECIFIED }, 'tier'],
    [{ deviceId: '' }, 'device_id'],
  ])('refuses %j with INVALID_ARGUMENT naming %s', async (over, field) => {
    await expect(load(over)).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      violations: [expect.objectContaining({ field })],
    });
  });

  it('answers NOT_FOUND for a device this host has no worker for', async () => {
    await expect(load({})).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(
      call(client.unloadModel, { modelId: 'm', deviceId: 'cuda:3', tier: modelV1.Tier.VRAM }),
    ).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(await call(client.listResident, { deviceId: '' })).toEqual({ models: [] });
  });
});
