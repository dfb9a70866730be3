import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type DopsError } from '@dops/errors';
import { call, createClient, stream } from '@dops/grpc-client';
import { modelV1 } from '@dops/proto';
import { startTestServer, testCredentials, type TestServer, waitFor } from '@dops/testing';
import {
  type HostLoadRequest,
  type ModelHosts,
  ModelLoader,
  ModelRegistry,
  modelService,
  type Reservations,
  type ReserveAnswer,
  type Tier,
} from '../src/index';
import { kohyaLora, originalCheckpoint } from './model-layouts';
import { tempDir, writeSafetensors } from './safetensors-writer';

/** Records every host call; loads answer from disk the first time, from RAM after. */
class RecordingHosts implements ModelHosts {
  readonly calls: string[] = [];
  private readonly held = new Set<string>();
  constructor(private readonly bytes = 1000) {}
  async load(req: HostLoadRequest) {
    this.calls.push(`load ${req.modelId} ${req.deviceId} ${req.tier}`);
    const hit = this.held.has(req.modelId);
    this.held.add(req.modelId);
    return {
      bytes: this.bytes,
      source: hit ? 'ram' : 'disk',
      timings: { readSeconds: hit ? 0 : 0.5, buildSeconds: hit ? 0 : 0.25, toDeviceSeconds: 0.1 },
    };
  }
  async unload(req: { modelId: string; deviceId: string; tier: Tier }) {
    this.calls.push(`unload ${req.modelId} ${req.deviceId} ${req.tier}`);
    const held = this.held.has(req.modelId);
    if (req.tier === 'ram') this.held.delete(req.modelId);
    return held;
  }
  close(): void {
    // nothing held
  }
}

/** A memory service stand-in with room for `maxModels` models: LRU plan over what it granted. */
class SmallReservations implements Reservations {
  readonly granted: string[] = [];
  constructor(private readonly maxModels: number) {}
  async reserve(req: { deviceId: string; bytes: number; modelId: string }): Promise<ReserveAnswer> {
    const others = this.granted.filter((m) => m !== req.modelId);
    if (others.length + 1 <= this.maxModels) {
      this.granted.splice(0, this.granted.length, ...others, req.modelId);
      return { granted: { id: `r-${req.modelId}` } };
    }
    return { evictionPlan: { modelIds: others.slice(0, 1) } };
  }
  async release(req: { modelId: string }) {
    const at = this.granted.indexOf(req.modelId);
    if (at >= 0) this.granted.splice(at, 1);
  }
  async touch() {
    // this stand-in plans by grant order only
  }
  close(): void {
    // nothing held
  }
}

const violationField = (err: DopsError) => err.violations?.[0]?.field;

describe('ModelService over gRPC (real server, files in temp roots)', () => {
  let dir: { dir: string; cleanup: () => Promise<void> };
  let root: string;
  let registry: ModelRegistry;
  let loader: ModelLoader;
  let hosts: RecordingHosts;
  let reservations: SmallReservations;
  let server: TestServer;
  let client: modelV1.ModelServiceClient;
  let clock = 1_000_000;

  beforeAll(async () => {
    dir = await tempDir('dops-model-service-');
    root = join(dir.dir, 'models');
    await writeSafetensors(
      join(root, 'checkpoints/sd15.safetensors'),
      originalCheckpoint({ width: 768, encoders: 'sd1' }),
    );
    await writeSafetensors(
      join(root, 'checkpoints/sdxl.safetensors'),
      originalCheckpoint({ width: 2048, encoders: 'sdxl' }),
    );
    await writeSafetensors(join(root, 'loras/style.safetensors'), kohyaLora({ te: 'te', unetWidth: 768 }), {
      ss_output_name: 'style',
    });
    await writeFile(join(root, 'checkpoints/old.ckpt'), Buffer.from('not really a pickle'));
    await mkdir(join(dir.dir, 'outside'), { recursive: true });
    await writeSafetensors(
      join(dir.dir, 'outside/secret.safetensors'),
      originalCheckpoint({ width: 768, encoders: 'sd1' }),
    );
    await symlink(join(dir.dir, 'outside/secret.safetensors'), join(root, 'checkpoints/escape.safetensors'));
    registry = new ModelRegistry({
      roots: [root],
      statePath: join(dir.dir, 'state.json'),
      watch: false,
      pollIntervalMs: 0,
    });
    registry.on('warning', () => undefined);
    await registry.start();
    await registry.idle();
    hosts = new RecordingHosts();
    reservations = new SmallReservations(2);
    loader = new ModelLoader({ registry, hosts, reservations, ramBudgetBytes: 0, now: () => clock });
    server = await startTestServer([modelService(registry, loader)]);
    client = createClient(modelV1.ModelServiceClient, server.address, {
      credentials: testCredentials('ops'),
    });
  });

  afterAll(async () => {
    client?.close();
    await server?.stop();
    loader?.close();
    await registry?.close();
    await dir?.cleanup();
  });

  const idOf = async (relPath: string) => (await call(client.getModel, { path: relPath })).model!.id;

  it('lists with type and base filters and pages', async () => {
    const all = await call(client.listModels, {
      type: modelV1.ModelType.UNSPECIFIED,
      base: modelV1.ModelBase.UNSPECIFIED,
      pageSize: 0,
      pageToken: '',
    });
    expect(all.models.map((m) => m.relativePath)).toEqual([
      'checkpoints/old.ckpt',
      'checkpoints/sd15.safetensors',
      'checkpoints/sdxl.safetensors',
      'loras/style.safetensors',
    ]);
    const checkpoints = await call(client.listModels, {
      type: modelV1.ModelType.CHECKPOINT,
      base: modelV1.ModelBase.UNSPECIFIED,
      pageSize: 0,
      pageToken: '',
    });
    expect(checkpoints.models.map((m) => m.relativePath)).toEqual([
      'checkpoints/sd15.safetensors',
      'checkpoints/sdxl.safetensors',
    ]);
    const sdxl = await call(client.listModels, {
      type: modelV1.ModelType.UNSPECIFIED,
      base: modelV1.ModelBase.SDXL,
      pageSize: 0,
      pageToken: '',
    });
    expect(sdxl.models).toEqual([
      expect.objectContaining({
        relativePath: 'checkpoints/sdxl.safetensors',
        type: modelV1.ModelType.CHECKPOINT,
        base: modelV1.ModelBase.SDXL,
        status: modelV1.ModelStatus.OK,
      }),
    ]);
    const first = await call(client.listModels, {
      type: modelV1.ModelType.UNSPECIFIED,
      base: modelV1.ModelBase.UNSPECIFIED,
      pageSize: 3,
      pageToken: '',
    });
    expect(first.models).toHaveLength(3);
    const second = await call(client.listModels, {
      type: modelV1.ModelType.UNSPECIFIED,
      base: modelV1.ModelBase.UNSPECIFIED,
      pageSize: 3,
      pageToken: first.nextPageToken,
    });
    expect(second.models.map((m) => m.relativePath)).toEqual(['loras/style.safetensors']);
    expect(second.nextPageToken).toBe('');
    const bad = (await call(client.listModels, {
      type: modelV1.ModelType.UNSPECIFIED,
      base: modelV1.ModelBase.UNSPECIFIED,
      pageSize: 5000,
      pageToken: '',
    }).catch((e) => e)) as DopsError;
    expect([bad.code, violationField(bad)]).toEqual(['INVALID_ARGUMENT', 'page_size']);
  });

  it('gets a model by id, by hash prefix and by path', async () => {
    const byPath = await call(client.getModel, { path: 'checkpoints/sd15.safetensors' });
    const model = byPath.model!;
    expect(model).toMatchObject({
      type: modelV1.ModelType.CHECKPOINT,
      base: modelV1.ModelBase.SD1,
      format: 'safetensors',
    });
    expect(model.hashes?.autoV2).toHaveLength(10);
    expect(byPath.residency).toEqual({ modelId: model.id, onDisk: true, devices: [] });
    expect((await call(client.getModel, { id: model.id })).model?.path).toBe(model.path);
    expect((await call(client.getModel, { hash: model.hashes!.autoV2 })).model?.id).toBe(model.id);
    expect((await call(client.getModel, { path: model.path })).model?.id).toBe(model.id);
  });

  it('refuses paths that leave the model roots with INVALID_ARGUMENT naming the field', async () => {
    const dotdot = (await call(client.getModel, { path: '../etc/passwd' }).catch((e) => e)) as DopsError;
    expect([dotdot.code, violationField(dotdot)]).toEqual(['INVALID_ARGUMENT', 'path']);
    const absolute = (await call(client.getModel, { path: '/etc/passwd' }).catch((e) => e)) as DopsError;
    expect([absolute.code, violationField(absolute)]).toEqual(['INVALID_ARGUMENT', 'path']);
    const escape = (await call(client.getModel, { path: 'checkpoints/escape.safetensors' }).catch(
      (e) => e,
    )) as DopsError;
    expect([escape.code, violationField(escape)]).toEqual(['INVALID_ARGUMENT', 'path']);
    expect(escape.message).toMatch(/symlink/);
    const missing = (await call(client.getModel, { path: 'checkpoints/none.safetensors' }).catch(
      (e) => e,
    )) as DopsError;
    expect(missing.code).toBe('NOT_FOUND');
  });

  it('validates ids and selectors at the edge', async () => {
    const noSelector = (await call(client.getModel, {}).catch((e) => e)) as DopsError;
    expect([noSelector.code, violationField(noSelector)]).toEqual(['INVALID_ARGUMENT', 'selector']);
    const badId = (await call(client.getModel, { id: 'xyz' }).catch((e) => e)) as DopsError;
    expect([badId.code, violationField(badId)]).toEqual(['INVALID_ARGUMENT', 'id']);
    await expect(call(client.getModel, { id: '0123456789abcdef' })).rejects.toMatchObject({
      code: 'NOT_FOUND',
    });
    const badHash = (await call(client.getModel, { hash: 'zz' }).catch((e) => e)) as DopsError;
    expect([badHash.code, violationField(badHash)]).toEqual(['INVALID_ARGUMENT', 'hash']);
  });

  it('rescans and verifies', async () => {
    await writeSafetensors(
      join(root, 'checkpoints/new.safetensors'),
      originalCheckpoint({ width: 768, encoders: 'sd1' }),
    );
    expect(await call(client.rescanModels, {})).toMatchObject({ added: 1, removed: 0 });
    const id = await idOf('checkpoints/sd15.safetensors');
    const verified = await call(client.verifyModel, { id });
    expect(verified.ok).toBe(true);
    expect(verified.actual?.sha256).toBe(verified.expected?.sha256);
    await expect(call(client.verifyModel, { id: '' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('refuses to load a refused pickle, and validates device and tier', async () => {
    const ckpt = await idOf('checkpoints/old.ckpt');
    const sd15 = await idOf('checkpoints/sd15.safetensors');
    await expect(
      call(client.loadModel, { modelId: ckpt, deviceId: 'cpu:0', tier: modelV1.Tier.RAM }),
    ).rejects.toMatchObject({ code: 'FAILED_PRECONDITION' });
    const noDevice = (await call(client.loadModel, {
      modelId: sd15,
      deviceId: '',
      tier: modelV1.Tier.RAM,
    }).catch((e) => e)) as DopsError;
    expect(violationField(noDevice)).toBe('device_id');
    const noTier = (await call(client.loadModel, {
      modelId: sd15,
      deviceId: 'cpu:0',
      tier: modelV1.Tier.UNSPECIFIED,
    }).catch((e) => e)) as DopsError;
    expect(violationField(noTier)).toBe('tier');
    expect(hosts.calls).toEqual([]);
  });

  it('lists a diffusers folder without weights as invalid and refuses to load it with FAILED_PRECONDITION naming model_id', async () => {
    const pipe = join(root, 'diffusers/configs-only');
    await mkdir(join(pipe, 'unet'), { recursive: true });
    await writeFile(
      join(pipe, 'model_index.json'),
      JSON.stringify({ _class_name: 'StableDiffusionPipeline', unet: ['diffusers', 'UNet2DConditionModel'] }),
    );
    await writeFile(
      join(pipe, 'unet/config.json'),
      JSON.stringify({ in_channels: 4, cross_attention_dim: 768 }),
    );
    try {
      expect(await call(client.rescanModels, {})).toMatchObject({ added: 1 });
      const { model } = await call(client.getModel, { path: 'diffusers/configs-only' });
      expect(model).toMatchObject({
        status: modelV1.ModelStatus.INVALID,
        reason: expect.stringMatching(/^unet: no weights/),
      });
      const refused = (await call(client.loadModel, {
        modelId: model!.id,
        deviceId: 'cpu:0',
        tier: modelV1.Tier.RAM,
      }).catch((e) => e)) as DopsError;
      expect([refused.code, violationField(refused)]).toEqual(['FAILED_PRECONDITION', 'model_id']);
      expect(refused.message).toMatch(/unet: no weights/);
      expect(hosts.calls).toEqual([]);
    } finally {
      await rm(pipe, { recursive: true, force: true });
      await call(client.rescanModels, {});
    }
  });

  it('loads into VRAM through a reservation, carries out the eviction plan, streams events with timings', async () => {
    const sd15 = await idOf('checkpoints/sd15.safetensors');
    const sdxl = await idOf('checkpoints/sdxl.safetensors');
    const lora = await idOf('loras/style.safetensors');
    const events: modelV1.LoadEvent[] = [];
    const abort = new AbortController();
    const watching = (async () => {
      for await (const m of stream(client.watchLoadEvents, { deviceId: 'cuda:0' }, { signal: abort.signal }))
        events.push(m.event!);
    })().catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 100)); // the stream subscribes on its first pull

    const first = await call(client.loadModel, {
      modelId: sd15,
      deviceId: 'cuda:0',
      tier: modelV1.Tier.VRAM,
    });
    expect(first.event).toMatchObject({
      kind: modelV1.LoadEventKind.LOADED,
      source: 'disk',
      timings: expect.objectContaining({ readSeconds: 0.5, buildSeconds: 0.25 }),
    });
    expect(first.residency?.devices).toEqual([
      expect.objectContaining({ deviceId: 'cuda:0', tier: modelV1.Tier.VRAM, bytes: 1000 }),
    ]);
    clock += 10;
    await call(client.loadModel, { modelId: lora, deviceId: 'cuda:0', tier: modelV1.Tier.VRAM });
    clock += 10;
    // Room for two: the third makes the memory service plan the least recently used one away.
    const third = await call(client.loadModel, {
      modelId: sdxl,
      deviceId: 'cuda:0',
      tier: modelV1.Tier.VRAM,
    });
    expect(third.event?.kind).toBe(modelV1.LoadEventKind.LOADED);
    expect(hosts.calls).toEqual([
      `load ${sd15} cuda:0 vram`,
      `load ${lora} cuda:0 vram`,
      `unload ${sd15} cuda:0 vram`,
      `load ${sdxl} cuda:0 vram`,
    ]);
    expect(reservations.granted).toEqual([lora, sdxl]);
    // The evicted model stays in RAM; loading it again reads nothing.
    const residency = await call(client.listResidency, { modelId: sd15, deviceId: '' });
    expect(residency.models[0].devices).toEqual([expect.objectContaining({ tier: modelV1.Tier.RAM })]);

    await waitFor(() => events.length >= 4);
    expect(events.map((e) => [e.kind, e.modelId])).toEqual([
      [modelV1.LoadEventKind.LOADED, sd15],
      [modelV1.LoadEventKind.LOADED, lora],
      [modelV1.LoadEventKind.EVICTED, sd15],
      [modelV1.LoadEventKind.LOADED, sdxl],
    ]);
    expect(events[2].reason).toMatch(/eviction plan/);

    const unloaded = await call(client.unloadModel, {
      modelId: sdxl,
      deviceId: 'cuda:0',
      tier: modelV1.Tier.RAM,
    });
    expect(unloaded).toMatchObject({
      unloaded: true,
      residency: { modelId: sdxl, onDisk: true, devices: [] },
    });
    expect(reservations.granted).toEqual([lora]);
    expect(
      (await call(client.unloadModel, { modelId: sdxl, deviceId: 'cuda:0', tier: modelV1.Tier.RAM }))
        .unloaded,
    ).toBe(false);
    abort.abort();
    await watching;
  });

  it('unloads through its host a model inference loaded for a queued job, and frees its reservation', async () => {
    const lora = await idOf('loras/style.safetensors');
    // A cold load decided by inference: the host holds it, the reservation exists, this loader never saw it.
    await hosts.load({ modelId: lora, path: '/x', deviceId: 'cuda:1', tier: 'vram' });
    await reservations.reserve({ deviceId: 'cuda:1', bytes: 1, modelId: lora });
    hosts.calls.length = 0;
    const unloaded = await call(client.unloadModel, {
      modelId: lora,
      deviceId: 'cuda:1',
      tier: modelV1.Tier.RAM,
    });
    expect(unloaded.unloaded).toBe(true);
    expect(hosts.calls).toEqual([`unload ${lora} cuda:1 ram`]);
    expect(reservations.granted).not.toContain(lora);
    // Not held any more: the host says so.
    expect(
      (await call(client.unloadModel, { modelId: lora, deviceId: 'cuda:1', tier: modelV1.Tier.RAM }))
        .unloaded,
    ).toBe(false);
  });

  it('bounds the RAM tier: budget evicts least recently used, keep-alive unloads idle models', async () => {
    const sd15 = await idOf('checkpoints/sd15.safetensors');
    const sdxl = await idOf('checkpoints/sdxl.safetensors');
    const fresh = await idOf('checkpoints/new.safetensors');
    // Hosts report 100 MB per model; before a load the file size (a few MB here) is the estimate.
    const ram = new ModelLoader({
      registry,
      hosts: new RecordingHosts(100_000_000),
      ramBudgetBytes: 200_000_001,
      keepAliveMs: 60_000,
      now: () => clock,
    });
    try {
      await ram.load(sd15, 'cpu:0', 'ram');
      clock += 10;
      await ram.load(sdxl, 'cpu:0', 'ram'); // 100 MB held + the file size of sdxl fits
      clock += 10;
      const evictions: string[] = [];
      ram.on('event', (e) => e.kind === 'evicted' && evictions.push(`${e.modelId} ${e.reason}`));
      await ram.load(fresh, 'cpu:0', 'ram');
      expect(evictions).toEqual([`${sd15} RAM budget`]);
      clock += 60_001;
      expect(await ram.sweep()).toBe(2);
      expect(ram.residency()).toEqual([]);
    } finally {
      ram.close();
    }
  });
});
