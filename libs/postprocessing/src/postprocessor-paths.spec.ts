import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DopsError } from '@dops/errors';
import { commonV1, postprocessingV1 } from '@dops/proto';
import { WorkerPool } from '@dops/worker-pool';
import { silentLogger } from '@dops/worker-supervisor';
import { Postprocessor } from './postprocessor';

// Validation comes before the device choice, so a pool without workers is enough: a request that
// passes it fails UNAVAILABLE (no worker), one that does not fails INVALID_ARGUMENT.
describe('Postprocessor path fields', () => {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'dops-postprocess-paths-')));
  const inputRoot = join(dir, 'in');
  const artifactRoot = join(dir, 'artifacts');
  const models = join(dir, 'models');
  const outside = join(dir, 'outside');
  const pool = new WorkerPool({
    name: 'paths',
    backend: 'cpu',
    logger: silentLogger,
    supervisor: { command: 'python3' },
  });
  const postprocessor = new Postprocessor(pool, { inputRoot, artifactRoot, modelRoots: [models] });
  const rpcs = {
    upscale: (image: string, modelPath: string) => postprocessor.upscale({ image, modelPath, deviceId: '' }),
    restoreFaces: (image: string, modelPath: string) =>
      postprocessor.restoreFaces({ image, modelPath, deviceId: '' }),
    checkSafety: (image: string, modelPath: string) =>
      postprocessor.checkSafety({ image, modelPath, policy: commonV1.SafetyPolicy.FLAG }),
    convert: (image: string) =>
      postprocessor.convert({ image, format: postprocessingV1.ImageFormat.PNG, deviceId: '' }),
  };
  type Rpc = keyof typeof rpcs;
  const answer = (promise: Promise<unknown>) =>
    promise.then(
      () => undefined,
      (e: DopsError) => ({ code: e.code, message: e.message, violations: e.violations }),
    );

  beforeAll(() => {
    for (const d of [inputRoot, artifactRoot, models, outside]) mkdirSync(d);
    writeFileSync(join(inputRoot, 'in.png'), 'png');
    writeFileSync(join(models, 'up.safetensors'), 'model');
    writeFileSync(join(outside, 'secret.png'), 's');
    writeFileSync(join(outside, 'secret.safetensors'), 's');
    symlinkSync(join(outside, 'secret.png'), join(inputRoot, 'file-link.png'));
    symlinkSync(outside, join(artifactRoot, 'folder-link'));
    symlinkSync(join(outside, 'secret.safetensors'), join(models, 'file-link.safetensors'));
    symlinkSync(outside, join(models, 'folder-link'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.each(Object.keys(rpcs) as Rpc[])('%s: confines image to the input and artifact roots', async (rpc) => {
    for (const image of [
      'file-link.png',
      join(artifactRoot, 'folder-link', 'secret.png'),
      '../outside/secret.png',
      'in.png\0',
      join(outside, 'secret.png'),
    ]) {
      expect(await answer(rpcs[rpc](image, 'up.safetensors'))).toMatchObject({
        code: 'INVALID_ARGUMENT',
        violations: [{ field: 'image' }],
      });
    }
    expect(await answer(rpcs[rpc](join(outside, 'secret.png'), 'up.safetensors'))).toEqual(
      await answer(rpcs[rpc](join(outside, 'missing.png'), 'up.safetensors')),
    );
    expect((await answer(rpcs[rpc]('in.png', 'up.safetensors')))?.code).toBe('UNAVAILABLE');
  });

  it.each(['upscale', 'restoreFaces', 'checkSafety'] as Rpc[])(
    '%s: confines model_path to the model roots',
    async (rpc) => {
      for (const modelPath of [
        'file-link.safetensors',
        'folder-link/secret.safetensors',
        'folder-link/missing.safetensors',
        '../outside/secret.safetensors',
        'up.safetensors\0',
      ]) {
        expect(await answer(rpcs[rpc]('in.png', modelPath))).toMatchObject({
          code: 'INVALID_ARGUMENT',
          violations: [{ field: 'model_path' }],
        });
      }
      expect(await answer(rpcs[rpc]('in.png', join(outside, 'secret.safetensors')))).toEqual(
        await answer(rpcs[rpc]('in.png', join(outside, 'missing.safetensors'))),
      );
    },
  );

  it('confines the configured safety checker too', async () => {
    const configured = new Postprocessor(pool, {
      inputRoot,
      artifactRoot,
      modelRoots: [models],
      safetyCheckerPath: join(models, 'folder-link'),
    });
    expect(
      await answer(
        configured.checkSafety({
          image: 'in.png',
          modelPath: '',
          policy: commonV1.SafetyPolicy.FLAG,
        }),
      ),
    ).toMatchObject({ code: 'INVALID_ARGUMENT', violations: [{ field: 'model_path' }] });
  });
});
