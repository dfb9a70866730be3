import { createHash } from 'node:crypto';
import { mkdir, open, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { DopsError } from '@dops/errors';
import {
  type FileHasher,
  hashFile,
  type ModelEntry,
  ModelRegistry,
  type ModelRegistryOptions,
} from '../src/index';
import { kohyaLora, originalCheckpoint, vae } from './model-layouts';
import { buildRaw, tempDir, writeSafetensors } from './safetensors-writer';

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** The value, or a test failure naming what was missing. */
function must<T>(value: T | undefined | null, what: string): T {
  if (value === undefined || value === null) throw new Error(`expected ${what}`);
  return value;
}

/** Resolves with the first event of `name` whose entry satisfies `test`, or rejects after `ms`. */
function nextEvent(
  registry: ModelRegistry,
  name: 'added' | 'removed' | 'updated' | 'hashed',
  test: (e: ModelEntry) => boolean,
  ms = 10_000,
): Promise<ModelEntry> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no '${name}' event within ${ms} ms`)), ms);
    const listener = (e: ModelEntry): void => {
      if (!test(e)) return;
      clearTimeout(timer);
      registry.off(name, listener);
      resolve(e);
    };
    registry.on(name, listener);
  });
}

describe('ModelRegistry', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let root: string;
  let statePath: string;
  const registries: ModelRegistry[] = [];
  let files: Record<string, Buffer>;
  let calls: string[];
  let hasher: FileHasher;

  async function open_(
    options: Partial<ModelRegistryOptions> = {},
    beforeStart?: (r: ModelRegistry) => void,
  ): Promise<ModelRegistry> {
    const registry = new ModelRegistry({
      roots: [root],
      statePath,
      hasher,
      watch: false,
      pollIntervalMs: 0,
      ...options,
    });
    registries.push(registry);
    beforeStart?.(registry);
    await registry.start();
    return registry;
  }

  beforeEach(async () => {
    ({ dir, cleanup } = await tempDir());
    root = join(dir, 'models');
    statePath = join(dir, 'state', 'registry.json');
    calls = [];
    hasher = async (path, options) => (calls.push(path), hashFile(path, options));
    files = {
      'checkpoints/sdxl.safetensors': await writeSafetensors(
        join(root, 'checkpoints/sdxl.safetensors'),
        originalCheckpoint({ width: 2048, encoders: 'sdxl' }),
      ),
      'checkpoints/sd15-inpaint.safetensors': await writeSafetensors(
        join(root, 'checkpoints/sd15-inpaint.safetensors'),
        originalCheckpoint({ width: 768, encoders: 'sd1', inChannels: 9 }),
      ),
      'loras/style.safetensors': await writeSafetensors(
        join(root, 'loras/style.safetensors'),
        kohyaLora({ te: 'te', unetWidth: 768 }),
        { ss_output_name: 'style' },
      ),
      'vae/vae.safetensors': await writeSafetensors(join(root, 'vae/vae.safetensors'), vae()),
    };
    const broken = buildRaw(
      {
        a: { dtype: 'F16', shape: [2], data_offsets: [0, 4] },
        b: { dtype: 'F16', shape: [2], data_offsets: [2, 6] },
      },
      6,
    );
    await writeFile(join(root, 'broken.safetensors'), broken);
    await writeFile(join(root, 'old.ckpt'), 'PK\x03\x04 not really a pickle');
    await writeFile(join(root, 'notes.txt'), 'ignored');
    await mkdir(join(root, '.cache'));
    await writeFile(join(root, '.cache', 'hidden.safetensors'), 'ignored');
    const pipe = join(root, 'diffusers', 'sd15');
    await mkdir(join(pipe, 'unet'), { recursive: true });
    await writeFile(
      join(pipe, 'model_index.json'),
      JSON.stringify({
        _class_name: 'StableDiffusionPipeline',
        text_encoder: ['transformers', 'CLIPTextModel'],
      }),
    );
    await writeFile(
      join(pipe, 'unet', 'config.json'),
      JSON.stringify({ in_channels: 4, cross_attention_dim: 768 }),
    );
    // Inside a diffusers folder: part of the folder, not an entry of its own.
    await writeSafetensors(join(pipe, 'unet', 'diffusion_pytorch_model.safetensors'), { x: { shape: [4] } });
  });

  afterEach(async () => {
    for (const r of registries.splice(0)) await r.close();
    await cleanup();
  });

  it('scans, identifies and lists every model in a stable order', async () => {
    const registry = await open_();
    const { entries, nextPageToken } = registry.list();
    expect(nextPageToken).toBeUndefined();
    expect(entries.map((e) => [e.relPath, e.type, e.base, e.variant, e.format, e.status])).toEqual([
      ['broken.safetensors', 'unknown', null, 'normal', 'safetensors', 'invalid'],
      [
        'checkpoints/sd15-inpaint.safetensors',
        'checkpoint',
        'sd1',
        'inpaint',
        'safetensors',
        expect.stringMatching(/^(hashing|ok)$/),
      ],
      [
        'checkpoints/sdxl.safetensors',
        'checkpoint',
        'sdxl',
        'normal',
        'safetensors',
        expect.stringMatching(/^(hashing|ok)$/),
      ],
      ['diffusers/sd15', 'checkpoint', 'sd1', 'normal', 'diffusers-folder', 'ok'],
      [
        'loras/style.safetensors',
        'lora',
        'sd1',
        'normal',
        'safetensors',
        expect.stringMatching(/^(hashing|ok)$/),
      ],
      ['old.ckpt', 'unknown', null, 'normal', 'ckpt', 'refused'],
      ['vae/vae.safetensors', 'vae', null, 'normal', 'safetensors', expect.stringMatching(/^(hashing|ok)$/)],
    ]);
    expect(entries[0].reason).toMatch(/overlap/);
    expect(entries[5].reason).toMatch(/pickle/);
    expect(entries.find((e) => e.type === 'lora')?.triggerWords).toEqual(['style']);
    for (const e of entries) expect(e.id).toMatch(/^[0-9a-f]{16}$/);
    const lora = must(
      entries.find((e) => e.type === 'lora'),
      'a lora entry',
    );
    expect(registry.get(lora.id)).toEqual(lora);
    await expect(Promise.resolve().then(() => registry.get('0000000000000000'))).rejects.toMatchObject({
      code: 'NOT_FOUND',
    });
  });

  it('accepts pickle files only with allowUnsafePickle', async () => {
    const registry = await open_({ allowUnsafePickle: true });
    await registry.idle();
    const ckpt = await registry.getByPath('old.ckpt');
    expect(ckpt).toMatchObject({ status: 'ok', format: 'ckpt', type: 'unknown' });
    expect(ckpt.hashes?.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it('filters by type and base and pages with tokens', async () => {
    const registry = await open_();
    expect(registry.list({ type: 'checkpoint' }).entries.map((e) => e.relPath)).toEqual([
      'checkpoints/sd15-inpaint.safetensors',
      'checkpoints/sdxl.safetensors',
      'diffusers/sd15',
    ]);
    expect(registry.list({ type: 'checkpoint', base: 'sdxl' }).entries).toHaveLength(1);
    const seen: string[] = [];
    let token: string | undefined;
    do {
      const page = registry.list({}, { pageSize: 3, pageToken: token });
      expect(page.entries.length).toBeLessThanOrEqual(3);
      seen.push(...page.entries.map((e) => e.relPath));
      token = page.nextPageToken;
    } while (token);
    expect(seen).toEqual(registry.list().entries.map((e) => e.relPath));
    expect(() => registry.list({ type: 'nope' as never })).toThrow(
      expect.objectContaining({
        code: 'INVALID_ARGUMENT',
        violations: [expect.objectContaining({ field: 'type' })],
      }),
    );
    expect(() => registry.list({}, { pageSize: 5000 })).toThrow(
      expect.objectContaining({ violations: [expect.objectContaining({ field: 'page_size' })] }),
    );
    expect(() => registry.list({}, { pageToken: 'garbage!' })).toThrow(
      expect.objectContaining({ violations: [expect.objectContaining({ field: 'page_token' })] }),
    );
  });

  it('hashes in the background: sha256, AutoV2, BLAKE3 and the addnet hash of a LoRA', async () => {
    const hashed: string[] = [];
    const registry = await open_({}, (r) => r.on('hashed', (e) => hashed.push(e.relPath)));
    await registry.idle();
    const lora = await registry.getByPath('loras/style.safetensors');
    const bytes = files['loras/style.safetensors'];
    expect(lora.status).toBe('ok');
    expect(lora.hashes).toMatchObject({ sha256: sha256(bytes), autov2: sha256(bytes).slice(0, 10) });
    expect(lora.hashes?.addnet).toBe(sha256(bytes.subarray(must(lora.dataOffset, 'dataOffset'))));
    expect(lora.hashes?.addnet).not.toBe(lora.hashes?.sha256);
    const sdxl = await registry.getByPath('checkpoints/sdxl.safetensors');
    expect(sdxl.hashes?.addnet).toBeUndefined();
    expect((await registry.getByPath('broken.safetensors')).hashes).toBeUndefined();
    expect(hashed.sort()).toEqual([
      'checkpoints/sd15-inpaint.safetensors',
      'checkpoints/sdxl.safetensors',
      'loras/style.safetensors',
      'old.ckpt',
      'vae/vae.safetensors',
    ]);
  });

  it('finds models by hash prefix, AutoV2 and addnet hash; refuses ambiguous and malformed prefixes', async () => {
    await writeFile(join(root, 'copy-a.safetensors'), files['vae/vae.safetensors']);
    const registry = await open_();
    await registry.idle();
    const sdxl = await registry.getByPath('checkpoints/sdxl.safetensors');
    const sdxlHashes = must(sdxl.hashes, 'sdxl hashes');
    expect(registry.getByHash(sdxlHashes.autov2).id).toBe(sdxl.id);
    expect(registry.getByHash(sdxlHashes.sha256.slice(0, 8).toUpperCase()).id).toBe(sdxl.id);
    expect(registry.getByHash(sdxlHashes.sha256).id).toBe(sdxl.id);
    const lora = await registry.getByPath('loras/style.safetensors');
    expect(registry.getByHash(must(lora.hashes?.addnet, 'addnet hash').slice(0, 12)).id).toBe(lora.id);
    const vaeHash = sha256(files['vae/vae.safetensors']);
    expect(() => registry.getByHash(vaeHash.slice(0, 10))).toThrow(
      expect.objectContaining({ code: 'FAILED_PRECONDITION' }),
    );
    expect(() => registry.getByHash('abc')).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => registry.getByHash('zzzzzzzzzz')).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
    expect(() => registry.getByHash('0123456789abcdef')).toThrow(
      expect.objectContaining({ code: 'NOT_FOUND' }),
    );
  });

  it('confines getByPath to the roots', async () => {
    const outside = join(dir, 'outside.safetensors');
    await writeSafetensors(outside, vae());
    await symlink(outside, join(root, 'escape.safetensors'));
    const registry = await open_();
    expect(registry.list().entries.map((e) => e.relPath)).not.toContain('escape.safetensors');
    await expect(registry.getByPath('../outside.safetensors', 'model')).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      violations: [{ field: 'model' }],
    });
    await expect(registry.getByPath(outside)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(registry.getByPath('escape.safetensors')).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(/symlink/),
    });
    await expect(registry.getByPath('notes.txt')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(registry.getByPath('missing.safetensors')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect((await registry.getByPath(join(root, 'vae', 'vae.safetensors'))).type).toBe('vae');
  });

  it('neither lists nor finds anything through a folder link, a dangling link, .. or a NUL byte', async () => {
    const outsideDir = join(dir, 'outside');
    await writeSafetensors(join(outsideDir, 'secret.safetensors'), vae());
    await symlink(outsideDir, join(root, 'escape-dir'));
    await symlink(join(outsideDir, 'not-yet.safetensors'), join(root, 'dangling.safetensors'));
    const registry = await open_();
    const listed = registry.list().entries.map((e) => e.relPath);
    expect(listed.filter((p) => /escape|dangling|secret/.test(p))).toEqual([]);
    const answer = (path: string) =>
      registry.getByPath(path, 'model').then(
        () => undefined,
        (e: DopsError) => ({ code: e.code, message: e.message, violations: e.violations }),
      );
    for (const path of [
      'escape-dir/secret.safetensors',
      'escape-dir/missing.safetensors',
      'dangling.safetensors',
      '../outside/secret.safetensors',
      'vae/vae.safetensors\0',
      join(outsideDir, 'secret.safetensors'),
    ])
      expect(await answer(path)).toMatchObject({
        code: 'INVALID_ARGUMENT',
        violations: [{ field: 'model' }],
      });
    // Outside the roots: one answer whether the file exists or not, directly or through the link.
    expect(await answer(join(outsideDir, 'secret.safetensors'))).toEqual(
      await answer(join(outsideDir, 'missing.safetensors')),
    );
    expect(await answer('escape-dir/secret.safetensors')).toEqual(
      await answer('escape-dir/missing.safetensors'),
    );
  });

  describe('diffusers folders', () => {
    async function pipeline(name: string, files: Record<string, string>): Promise<string> {
      const pipe = join(root, 'pipelines', name);
      await mkdir(join(pipe, 'unet'), { recursive: true });
      await writeFile(
        join(pipe, 'model_index.json'),
        JSON.stringify({
          _class_name: 'StableDiffusionPipeline',
          text_encoder: ['transformers', 'CLIPTextModel'],
        }),
      );
      await writeFile(
        join(pipe, 'unet', 'config.json'),
        JSON.stringify({ in_channels: 4, cross_attention_dim: 768 }),
      );
      for (const [file, body] of Object.entries(files)) {
        await mkdir(join(pipe, file, '..'), { recursive: true });
        await writeFile(join(pipe, file), body);
      }
      return `pipelines/${name}`;
    }

    it('lists one whose weights are only .bin (in any component) as refused, naming the components', async () => {
      const binOnly = await pipeline('bin-only', { 'unet/diffusion_pytorch_model.bin': 'pickle' });
      const mixed = await pipeline('text-encoder-bin', {
        'unet/diffusion_pytorch_model.safetensors': 'x',
        'text_encoder/pytorch_model.bin': 'pickle',
      });
      const both = await pipeline('both', {
        'unet/diffusion_pytorch_model.safetensors': 'x',
        'unet/diffusion_pytorch_model.bin': 'pickle',
      });
      const registry = await open_();
      expect(await registry.getByPath(binOnly)).toMatchObject({
        status: 'refused',
        reason: 'pickle weights (.bin) only; convert to safetensors (unet)',
      });
      expect(await registry.getByPath(mixed)).toMatchObject({
        status: 'refused',
        reason: expect.stringContaining('(text_encoder)'),
      });
      // With a .safetensors beside it the loader takes that one.
      expect(await registry.getByPath(both)).toMatchObject({ status: 'ok', type: 'checkpoint' });
      // The node allows pickle: listed as loadable, with a note; switching back refuses it again.
      await registry.close();
      const allowing = await open_({ allowUnsafePickle: true });
      expect(await allowing.getByPath(binOnly)).toMatchObject({
        status: 'ok',
        notes: expect.arrayContaining([expect.stringMatching(/pickle/)]),
      });
      await allowing.close();
      expect((await (await open_()).getByPath(binOnly)).status).toBe('refused');
    });

    it('lists one whose model components hold configs but no weights as invalid, naming them', async () => {
      const configsOnly = await pipeline('configs-only', {
        'scheduler/scheduler_config.json': '{}',
        'tokenizer/tokenizer_config.json': '{}',
      });
      const noVae = await pipeline('no-vae-weights', {
        'unet/diffusion_pytorch_model.safetensors': 'x',
        'vae/config.json': '{}',
        'vae/diffusion_pytorch_model.safetensors.index.json': '{}',
      });
      // Schedulers and tokenizers have no weights; a component holding only pickle is refused, not invalid.
      const complete = await pipeline('complete', {
        'unet/diffusion_pytorch_model.safetensors': 'x',
        'scheduler/scheduler_config.json': '{}',
        'tokenizer/vocab.json': '{}',
      });
      const registry = await open_({ allowUnsafePickle: true });
      expect(await registry.getByPath(configsOnly)).toMatchObject({
        status: 'invalid',
        type: 'checkpoint',
        base: 'sd1',
        reason: 'unet: no weights (config.json without a .safetensors file)',
      });
      expect(await registry.getByPath(noVae)).toMatchObject({
        status: 'invalid',
        reason: expect.stringMatching(/^vae: no weights/),
      });
      expect((await registry.getByPath(complete)).status).toBe('ok');
      // Adding the weights makes it loadable on the next scan.
      await writeSafetensors(join(root, configsOnly, 'unet', 'diffusion_pytorch_model.safetensors'), {
        x: { shape: [4] },
      });
      await registry.rescan();
      expect(await registry.getByPath(configsOnly)).toMatchObject({ status: 'ok', type: 'checkpoint' });
    });

    it('lists one holding a symlink out of the roots as invalid, and notices a link added later', async () => {
      await writeSafetensors(join(dir, 'outside', 'unet.safetensors'), { x: { shape: [4] } });
      const linked = await pipeline('linked', {});
      await symlink(
        join(dir, 'outside', 'unet.safetensors'),
        join(root, linked, 'unet', 'diffusion_pytorch_model.safetensors'),
      );
      const clean = await pipeline('clean', { 'unet/diffusion_pytorch_model.safetensors': 'x' });
      const registry = await open_();
      expect(await registry.getByPath(linked)).toMatchObject({
        status: 'invalid',
        reason: 'symlinks out of the model roots: unet/diffusion_pytorch_model.safetensors',
      });
      expect((await registry.getByPath(clean)).status).toBe('ok');
      await symlink(join(dir, 'outside'), join(root, clean, 'text_encoder'));
      await registry.rescan();
      expect(await registry.getByPath(clean)).toMatchObject({
        status: 'invalid',
        reason: expect.stringMatching(/text_encoder/),
      });
    });
  });

  it('writes its state owner-only: registry.json 0600 in a folder it creates 0700', async () => {
    const registry = await open_();
    await registry.close();
    expect((await stat(statePath)).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, 'state'))).mode & 0o777).toBe(0o700);
    expect((await stat(statePath.replace(/\.json$/, '.hashes.json'))).mode & 0o777).toBe(0o600);
  });

  it('persists entries and hashes: a new instance re-hashes nothing and keeps ids and hashedAt', async () => {
    const first = await open_();
    await first.idle();
    const before = first.list().entries;
    const hashCount = calls.length;
    expect(hashCount).toBe(5);
    await first.close();

    const second = await open_();
    await second.idle();
    expect(calls).toHaveLength(hashCount);
    expect(second.list().entries).toEqual(before);

    // A changed file is re-identified and re-hashed; the rest stay cached.
    const path = join(root, 'checkpoints/sdxl.safetensors');
    await writeSafetensors(path, originalCheckpoint({ width: 2048, encoders: 'sdxl', inChannels: 9 }));
    const updated = nextEvent(second, 'updated', (e) => e.relPath === 'checkpoints/sdxl.safetensors');
    expect(await second.rescan()).toMatchObject({ updated: 1, added: 0, removed: 0 });
    expect((await updated).variant).toBe('inpaint');
    await second.idle();
    expect(calls).toEqual([...calls.slice(0, hashCount), path]);
  });

  it('sees a file added after start through fs.watch, and its removal', async () => {
    const registry = await open_({ watch: true, debounceMs: 50 });
    const added = nextEvent(registry, 'added', (e) => e.relPath === 'new/late.safetensors');
    await writeSafetensors(
      join(root, 'new', 'late.safetensors'),
      kohyaLora({ te: 'te1+te2', unetWidth: 2048 }),
    );
    expect(await added).toMatchObject({ type: 'lora', base: 'sdxl' });
    expect(registry.list({ type: 'lora', base: 'sdxl' }).entries).toHaveLength(1);
    const removed = nextEvent(registry, 'removed', (e) => e.relPath === 'new/late.safetensors');
    await rm(join(root, 'new'), { recursive: true });
    await removed;
    expect(registry.list({ type: 'lora', base: 'sdxl' }).entries).toHaveLength(0);
  });

  it('sees a file added after start through the periodic rescan when not watching', async () => {
    const registry = await open_({ watch: false, pollIntervalMs: 100 });
    const added = nextEvent(registry, 'added', (e) => e.relPath === 'polled.safetensors');
    await writeSafetensors(join(root, 'polled.safetensors'), vae());
    expect((await added).type).toBe('vae');
  });

  it('verify re-hashes and reports a mismatch when bytes change under the same size and mtime', async () => {
    const registry = await open_();
    await registry.idle();
    const entry = await registry.getByPath('vae/vae.safetensors');
    const good = await registry.verify(entry.id);
    expect(good.ok).toBe(true);
    expect(good.actual).toEqual(good.expected);

    const path = join(root, 'vae/vae.safetensors');
    const { atime, mtime } = await stat(path);
    const handle = await open(path, 'r+');
    await handle.write(Buffer.from([0xde, 0xad]), 0, 2, (await stat(path)).size - 2);
    await handle.close();
    await utimes(path, atime, mtime);
    const bad = await registry.verify(entry.id);
    expect(bad.ok).toBe(false);
    expect(bad.actual.sha256).not.toBe(bad.expected.sha256);
    // verify does not overwrite the recorded hashes
    expect((await registry.getByPath('vae/vae.safetensors')).hashes).toEqual(good.expected);

    await expect(registry.verify((await registry.getByPath('diffusers/sd15')).id)).rejects.toMatchObject({
      code: 'UNSUPPORTED',
    });
    await expect(registry.verify((await registry.getByPath('broken.safetensors')).id)).rejects.toMatchObject({
      code: 'FAILED_PRECONDITION',
    });
  });

  it('refuses to start twice and to rescan after close', async () => {
    const registry = await open_();
    await expect(registry.start()).rejects.toMatchObject({ code: 'FAILED_PRECONDITION' });
    await registry.close();
    expect(registry.state).toBe('closed');
    await expect(registry.rescan()).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });
});
