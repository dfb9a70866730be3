import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DopsError } from '@dops/errors';
import { call, createClient } from '@dops/grpc-client';
import { modelHostV1, modelV1 } from '@dops/proto';
import { startTestServer, testCredentials, type TestServer } from '@dops/testing';
import { WorkerPool } from '@dops/worker-pool';
import { silentLogger } from '@dops/worker-supervisor';
import { ModelHost, modelHostService } from '../src/index';

// Validation happens before any worker is asked, so an unstarted pool (no devices) is enough here;
// loads through a real worker are tested in libs/model/test/model-host-worker.int-spec.ts.
describe('ModelHostService edge validation (real server, pool without workers)', () => {
  let server: TestServer;
  let client: modelHostV1.ModelHostServiceClient;
  // realpath: the temp dir may sit behind a symlink (macOS /var → /private/var).
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'dops-host-roots-')));
  const models = join(dir, 'models');
  const outside = join(dir, 'outside');
  const hostConfigs = join(dir, 'host-configs');
  const pool = new WorkerPool({
    name: 'host-test',
    backend: 'cpu',
    logger: silentLogger,
    supervisor: { command: 'python3' },
  });
  const load = (over: Partial<modelHostV1.ModelHostServiceLoadModelRequest>) =>
    call(client.loadModel, {
      modelId: 'm',
      path: join(models, 'a.safetensors'),
      deviceId: 'cpu:0',
      tier: modelV1.Tier.RAM,
      configDir: '',
      ...over,
    });
  const refusal = (over: Partial<modelHostV1.ModelHostServiceLoadModelRequest>) =>
    load(over).then(
      () => {
        throw new Error(`expected ${JSON.stringify(over)} to be refused`);
      },
      (err: DopsError) => ({ code: err.code, message: err.message, violations: err.violations }),
    );

  beforeAll(async () => {
    for (const d of [join(models, 'configs'), outside, hostConfigs]) mkdirSync(d, { recursive: true });
    writeFileSync(join(models, 'a.safetensors'), 'a');
    writeFileSync(join(outside, 'secret.safetensors'), 's');
    symlinkSync(join(outside, 'secret.safetensors'), join(models, 'file-link.safetensors'));
    symlinkSync(outside, join(models, 'folder-link'));
    server = await startTestServer([
      modelHostService(new ModelHost(pool), { modelRoots: [models], configDir: hostConfigs }),
    ]);
    client = createClient(modelHostV1.ModelHostServiceClient, server.address, {
      credentials: testCredentials('model', 'mtls'),
    });
  });
  afterAll(async () => {
    client.close();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it.each([
    [{ modelId: '' }, 'model_id'],
    [{ path: '' }, 'path'],
    [{ path: 'models/a.safetensors' }, 'path'],
    [{ tier: modelV1.Tier.UNSPECIFIED }, 'tier'],
    [{ deviceId: '' }, 'device_id'],
    [{ sha256: 'abc' }, 'sha256'],
    [{ sha256: 'g'.repeat(64) }, 'sha256'],
  ])('refuses %j with INVALID_ARGUMENT naming %s', async (over, field) => {
    await expect(load(over)).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      violations: [expect.objectContaining({ field })],
    });
  });

  it.each([
    ['an existing file outside the roots', () => join(outside, 'secret.safetensors')],
    ['a missing file outside the roots', () => join(outside, 'missing.safetensors')],
    ['a system file', () => '/etc/passwd'],
    // Not join(): it would normalise the .. away.
    ['a .. escape', () => `${models}/../outside/secret.safetensors`],
    ['a file symlink out of the roots', () => join(models, 'file-link.safetensors')],
    ['a folder symlink out of the roots', () => join(models, 'folder-link', 'secret.safetensors')],
    ['a NUL byte', () => `${join(models, 'a.safetensors')}\0.png`],
  ])('refuses %s with INVALID_ARGUMENT naming path, before any worker', async (_name, path) => {
    const answer = await refusal({ path: path() });
    expect(answer).toMatchObject({ code: 'INVALID_ARGUMENT', violations: [{ field: 'path' }] });
  });

  it('answers a path outside the roots the same whether it exists or not (directly or through a link)', async () => {
    const existing = await refusal({ path: join(outside, 'secret.safetensors') });
    expect(await refusal({ path: join(outside, 'missing.safetensors') })).toEqual(existing);
    expect(existing.message).toBe('path: must be inside a model root of this host');
    const linked = await refusal({ path: join(models, 'folder-link', 'secret.safetensors') });
    expect(await refusal({ path: join(models, 'folder-link', 'missing.safetensors') })).toEqual(linked);
  });

  it('confines config_dir to the model roots and the host config dir', async () => {
    expect(await refusal({ configDir: outside })).toMatchObject({
      code: 'INVALID_ARGUMENT',
      violations: [
        { field: 'config_dir', description: 'must be inside a model root or the config dir of this host' },
      ],
    });
    expect(await refusal({ configDir: join(models, 'folder-link') })).toMatchObject({
      violations: [{ field: 'config_dir' }],
    });
    // Inside: past validation to the device lookup (this pool has no workers).
    for (const configDir of [join(models, 'configs'), hostConfigs])
      await expect(load({ configDir })).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('answers NOT_FOUND for a device this host has no worker for', async () => {
    await expect(load({})).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(
      call(client.unloadModel, { modelId: 'm', deviceId: 'cuda:3', tier: modelV1.Tier.VRAM }),
    ).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(await call(client.listResident, { deviceId: '' })).toEqual({ models: [] });
  });
});
