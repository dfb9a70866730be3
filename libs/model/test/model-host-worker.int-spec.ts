import { existsSync } from 'node:fs';
import { copyFile, cp, mkdir } from 'node:fs/promises';
import { delimiter, join, resolve } from 'node:path';
import { call, createClient } from '@dops/grpc-client';
import { ModelHost, modelHostService } from '@dops/model-host';
import { modelHostV1, modelV1 } from '@dops/proto';
import { startTestServer, testCredentials, type TestServer } from '@dops/testing';
import { WorkerPool } from '@dops/worker-pool';
import { resolvePythonExecutable, silentLogger } from '@dops/worker-supervisor';
import { GrpcModelHosts, type LoadEvent, ModelLoader, ModelRegistry, modelService } from '../src/index';
import { tempDir } from './safetensors-writer';

const REPO_ROOT = resolve(__dirname, '../../..');
const FIXTURES = join(REPO_ROOT, 'tools/fixtures/generated');
const CHECKPOINT = join(FIXTURES, 'sd15-tiny.safetensors');
const PYTHON_WORKERS = join(REPO_ROOT, 'python-workers');
const haveFixtures = existsSync(CHECKPOINT) && existsSync(join(FIXTURES, 'configs'));
// The worker registers model.* when dops_worker.models.methods is imported; importing it before
// run() keeps this test independent of whether the runtime's method list names it yet.
const WORKER_MAIN = [
  'from dops_worker.runtime.stdio import guard_stdout',
  'frames_in, frames_out = guard_stdout()',
  'import dops_worker.models.methods',
  'from dops_worker.runtime.main import run',
  'run(frames_in, frames_out)',
].join('\n');

if (!haveFixtures) {
  console.warn(
    `skipping the model-host integration test: run \`python tools/fixtures/generate.py --out tools/fixtures/generated\` (missing ${CHECKPOINT})`,
  );
}

(haveFixtures ? describe : describe.skip)('model service → model host → real Python worker (cpu)', () => {
  let dir: { dir: string; cleanup: () => Promise<void> };
  let pool: WorkerPool;
  let host: TestServer;
  let service: TestServer;
  let registry: ModelRegistry;
  let loader: ModelLoader;
  let hosts: GrpcModelHosts;
  let client: modelV1.ModelServiceClient;
  let hostClient: modelHostV1.ModelHostServiceClient;

  beforeAll(async () => {
    dir = await tempDir('dops-model-host-');
    await mkdir(join(dir.dir, 'models'));
    await copyFile(CHECKPOINT, join(dir.dir, 'models', 'sd15-tiny.safetensors'));
    // Beside the models (the registry would list a config folder as a pipeline), inside the host's roots.
    await cp(join(FIXTURES, 'configs'), join(dir.dir, 'configs'), { recursive: true });
    pool = new WorkerPool({
      name: 'model-test',
      backend: 'cpu',
      logger: silentLogger,
      supervisor: {
        command: resolvePythonExecutable({ repoRoot: REPO_ROOT }),
        args: ['-c', WORKER_MAIN],
        cwd: PYTHON_WORKERS,
        env: {
          ...process.env,
          DOPS_BACKEND: 'cpu',
          HF_HUB_OFFLINE: '1',
          PYTHONPATH: join(PYTHON_WORKERS, 'src'),
          DOPS_MODEL_ROOTS: [join(dir.dir, 'models'), join(dir.dir, 'configs')].join(delimiter),
        },
        handshakeTimeoutMs: 30_000,
        requestTimeoutMs: 30_000,
        shutdownTimeoutMs: 2_000,
        stdinCloseTimeoutMs: 1_000,
        sigtermTimeoutMs: 1_000,
        drainTimeoutMs: 1_000,
      },
    });
    await pool.start();
    host = await startTestServer([
      modelHostService(new ModelHost(pool), {
        modelRoots: [join(dir.dir, 'models')],
        configDir: join(dir.dir, 'configs'),
      }),
    ]);
    registry = new ModelRegistry({
      roots: [join(dir.dir, 'models')],
      statePath: join(dir.dir, 'state.json'),
      watch: false,
      pollIntervalMs: 0,
    });
    await registry.start();
    hosts = new GrpcModelHosts({ fallback: host.address }, testCredentials('model', 'mtls'), 30_000);
    loader = new ModelLoader({ registry, hosts });
    service = await startTestServer([modelService(registry, loader)]);
    client = createClient(modelV1.ModelServiceClient, service.address, {
      credentials: testCredentials('ops'),
    });
    hostClient = createClient(modelHostV1.ModelHostServiceClient, host.address, {
      credentials: testCredentials('model', 'mtls'),
    });
  }, 60_000);

  afterAll(async () => {
    client?.close();
    hostClient?.close();
    hosts?.close();
    loader?.close();
    await service?.stop();
    await host?.stop();
    await pool?.stop();
    await registry?.close();
    await dir?.cleanup();
  });

  it('loads into RAM, then VRAM from RAM, re-uses the RAM copy, unloads, and reports residency', async () => {
    const deviceId = pool.list()[0].device.id;
    const model = (await call(client.getModel, { path: 'sd15-tiny.safetensors' })).model!;
    const events: LoadEvent[] = [];
    loader.on('event', (e) => events.push(e));

    const ram = await call(client.loadModel, { modelId: model.id, deviceId, tier: modelV1.Tier.RAM });
    expect(ram.event).toMatchObject({
      kind: modelV1.LoadEventKind.LOADED,
      source: 'disk',
      tier: modelV1.Tier.RAM,
    });
    expect(ram.event!.timings!.readSeconds).toBeGreaterThan(0);
    expect(ram.event!.timings!.buildSeconds).toBeGreaterThan(0);
    expect(ram.event!.bytes).toBeGreaterThan(0);

    const vram = await call(client.loadModel, { modelId: model.id, deviceId, tier: modelV1.Tier.VRAM });
    expect(vram.event).toMatchObject({ source: 'ram', tier: modelV1.Tier.VRAM });
    expect(vram.event!.timings).toMatchObject({ readSeconds: 0, buildSeconds: 0 });
    expect(vram.residency!.devices).toEqual([
      expect.objectContaining({ deviceId, tier: modelV1.Tier.VRAM, bytes: ram.event!.bytes }),
    ]);
    const onHost = await call(hostClient.listResident, { deviceId: '' });
    expect(onHost.models).toEqual([
      expect.objectContaining({ modelId: model.id, deviceId, tier: modelV1.Tier.VRAM }),
    ]);

    expect(
      (await call(client.unloadModel, { modelId: model.id, deviceId, tier: modelV1.Tier.VRAM })).unloaded,
    ).toBe(true);
    const again = await call(client.loadModel, { modelId: model.id, deviceId, tier: modelV1.Tier.RAM });
    expect(again.event).toMatchObject({
      source: 'ram',
      timings: expect.objectContaining({ readSeconds: 0, buildSeconds: 0 }),
    });

    const unloaded = await call(client.unloadModel, { modelId: model.id, deviceId, tier: modelV1.Tier.RAM });
    expect(unloaded).toMatchObject({
      unloaded: true,
      residency: { modelId: model.id, onDisk: true, devices: [] },
    });
    expect((await call(hostClient.listResident, { deviceId })).models).toEqual([]);
    expect(events.map((e) => `${e.kind} ${e.tier}`)).toEqual([
      'loaded ram',
      'loaded vram',
      'unloaded vram',
      'loaded ram',
      'unloaded ram',
    ]);
  });

  it('host refuses a checkpoint outside its model roots before the worker sees it', async () => {
    // The shared fixture is a real checkpoint, outside this host's roots (the temp models folder).
    await expect(
      call(hostClient.loadModel, {
        modelId: 'outside',
        path: CHECKPOINT,
        deviceId: pool.list()[0].device.id,
        tier: modelV1.Tier.RAM,
        configDir: '',
      }),
    ).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      violations: [{ field: 'path', description: 'must be inside a model root of this host' }],
    });
    expect((await call(hostClient.listResident, { deviceId: '' })).models).toEqual([]);
  });

  it('host refuses a relative path and an unknown device with the field named', async () => {
    await expect(
      call(hostClient.loadModel, {
        modelId: 'm',
        path: 'relative.safetensors',
        deviceId: 'cpu:0',
        tier: modelV1.Tier.RAM,
        configDir: '',
      }),
    ).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      violations: [expect.objectContaining({ field: 'path' })],
    });
    await expect(
      call(hostClient.loadModel, {
        modelId: 'm',
        path: join(dir.dir, 'models', 'sd15-tiny.safetensors'),
        deviceId: 'cuda:7',
        tier: modelV1.Tier.RAM,
        configDir: '',
      }),
    ).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });
});
