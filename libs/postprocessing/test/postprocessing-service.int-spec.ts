import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { DopsError } from '@dops/errors';
import { call, createClient } from '@dops/grpc-client';
import { commonV1, postprocessingV1 } from '@dops/proto';
import { startTestServer, testCredentials, type TestServer } from '@dops/testing';
import { WorkerPool } from '@dops/worker-pool';
import { resolvePythonExecutable, silentLogger } from '@dops/worker-supervisor';
import { Postprocessor, postprocessingService } from '../src/index';

const REPO_ROOT = resolve(__dirname, '../../..');
const FIXTURES = join(REPO_ROOT, 'tools/fixtures/generated');
const UPSCALER = 'upscaler-compact-2x-tiny.safetensors';
const FLAGS_ALL = 'safety-checker-tiny-flags-all';
const PASSES_ALL = 'safety-checker-tiny-passes-all';
const PYTHON_WORKERS = join(REPO_ROOT, 'python-workers');
const haveFixtures = [UPSCALER, FLAGS_ALL, PASSES_ALL].every((name) => existsSync(join(FIXTURES, name)));
// Imports only the methods this service uses, so the test does not depend on the runtime's list.
const WORKER_MAIN = [
  'from dops_worker.runtime.stdio import guard_stdout',
  'frames_in, frames_out = guard_stdout()',
  'import dops_worker.postprocessing.methods',
  'from dops_worker.runtime.main import run',
  'run(frames_in, frames_out)',
].join('\n');
// A 16×16 RGB PNG, written by the worker's own test image generator would need Python: a tiny
// one is encoded here (zlib-stored rows), so the test owns its input bytes.
function png(width: number, height: number): Buffer {
  const { deflateSync } = require('node:zlib') as typeof import('node:zlib');
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf: Buffer) => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff]! ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc(body), 8 + data.length);
    return out;
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  const rows = Buffer.alloc(height * (1 + width * 3));
  for (let y = 0; y < height; y += 1)
    for (let x = 0; x < width; x += 1) {
      const at = y * (1 + width * 3) + 1 + x * 3;
      rows[at] = (x * 37 + y * 11) & 0xff;
      rows[at + 1] = (x * y * 7) & 0xff;
      rows[at + 2] = (255 - x * 13) & 0xff;
    }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(rows)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

async function rejection(promise: Promise<unknown>): Promise<DopsError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof DopsError) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

if (!haveFixtures) {
  // eslint-disable-next-line no-console
  console.warn('skipping the postprocessing integration test: run `python tools/fixtures/generate.py`');
}

(haveFixtures ? describe : describe.skip)('PostprocessingService over a real Python worker (cpu)', () => {
  let root: string;
  let inputRoot: string;
  let models: string;
  let pool: WorkerPool;
  let server: TestServer;
  let client: postprocessingV1.PostprocessingServiceClient;

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'dops-postprocessing-'));
    const artifactRoot = join(root, 'artifacts');
    inputRoot = join(root, 'inputs');
    models = join(root, 'models');
    await mkdir(inputRoot, { recursive: true });
    await writeFile(join(inputRoot, 'in.png'), png(16, 16));
    await writeFile(join(inputRoot, 'big.png'), png(64, 64));
    await writeFile(join(inputRoot, 'notes.png'), 'not an image');
    // Copies, so a concurrent regeneration of the shared fixtures cannot pull them away mid-test.
    await cp(join(FIXTURES, UPSCALER), join(models, UPSCALER));
    await cp(join(FIXTURES, FLAGS_ALL), join(models, FLAGS_ALL), { recursive: true });
    await cp(join(FIXTURES, PASSES_ALL), join(models, PASSES_ALL), { recursive: true });
    // Files outside every root, and links from inside the roots to them (file and folder links).
    const outside = join(root, 'outside');
    await mkdir(outside);
    await writeFile(join(outside, 'secret.png'), png(16, 16));
    await cp(join(FIXTURES, UPSCALER), join(outside, 'secret.safetensors'));
    await symlink(join(outside, 'secret.png'), join(inputRoot, 'file-link.png'));
    await symlink(outside, join(inputRoot, 'folder-link'));
    await symlink(join(outside, 'secret.safetensors'), join(models, 'file-link.safetensors'));
    await symlink(outside, join(models, 'folder-link'));
    pool = new WorkerPool({
      name: 'postprocessing-test',
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
          OMP_NUM_THREADS: '1',
          PYTHONPATH: join(PYTHON_WORKERS, 'src'),
          DOPS_ARTIFACT_ROOT: artifactRoot,
          DOPS_INPUT_ROOT: inputRoot,
          DOPS_MODEL_ROOTS: models,
        },
        handshakeTimeoutMs: 30_000,
        requestTimeoutMs: 30_000,
        cancelGraceMs: 5_000,
        shutdownTimeoutMs: 2_000,
        stdinCloseTimeoutMs: 1_000,
        sigtermTimeoutMs: 1_000,
        drainTimeoutMs: 1_000,
      },
    });
    await pool.start();
    const postprocessor = new Postprocessor(pool, {
      inputRoot,
      artifactRoot,
      modelRoots: [models],
      safetyCheckerPath: join(models, FLAGS_ALL),
    });
    server = await startTestServer([postprocessingService(postprocessor)]);
    client = createClient(postprocessingV1.PostprocessingServiceClient, server.address, {
      credentials: testCredentials('ops'),
    });
  }, 60_000);

  afterAll(async () => {
    client?.close();
    await server?.stop();
    await pool?.stop();
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('upscales 16×16 to 32×32: a PNG whose sha256 and size match the reply', async () => {
    const reply = await call(
      client.upscale,
      { image: 'in.png', modelPath: UPSCALER, deviceId: '' },
      { deadlineMs: 30_000 },
    );
    expect(reply).toMatchObject({ scale: 2, architecture: 'Compact', tiles: 1, deviceId: 'cpu:0' });
    const file = await readFile(reply.image!.path);
    expect(reply.image).toMatchObject({ sha256: sha256(file), width: 32, height: 32, format: 'png' });
    expect(file.readUInt32BE(16)).toBe(32); // IHDR width
  });

  it('upscales in tiles and takes its own output as the next input', async () => {
    const tiled = await call(
      client.upscale,
      { image: 'big.png', modelPath: UPSCALER, tileSize: 32, tileOverlap: 8, deviceId: '' },
      { deadlineMs: 30_000 },
    );
    expect(tiled.tiles).toBe(9); // 0, 24 and the edge-aligned 32 on each axis
    expect(tiled.image).toMatchObject({ width: 128, height: 128 });
    const converted = await call(
      client.convert,
      { image: tiled.image!.path, format: postprocessingV1.ImageFormat.WEBP, quality: 50, deviceId: '' },
      { deadlineMs: 30_000 },
    );
    expect(converted.image).toMatchObject({ width: 128, height: 128, format: 'webp' });
    expect(converted.quality).toBe(50);
  });

  it('checks safety with each policy', async () => {
    const image = join(inputRoot, 'in.png');
    const check = (policy: commonV1.SafetyPolicy, modelPath = '') =>
      call(client.checkSafety, { image, policy, modelPath, deviceId: '' }, { deadlineMs: 30_000 });
    const passed = await check(commonV1.SafetyPolicy.BLOCK, PASSES_ALL);
    expect(passed).toMatchObject({
      nsfw: false,
      action: commonV1.SafetyAction.PASSED,
      blocked: false,
    });
    expect(passed.image?.path).toBe(image);
    // UNSPECIFIED = the service default (flag), with the configured checker (flags everything).
    const flagged = await check(commonV1.SafetyPolicy.UNSPECIFIED);
    expect(flagged).toMatchObject({
      nsfw: true,
      policy: commonV1.SafetyPolicy.FLAG,
      action: commonV1.SafetyAction.FLAGGED,
    });
    // FLAG delivers a copy whose metadata and artifact record the flag; the input is left alone.
    expect(flagged.image?.path).not.toBe(image);
    expect(flagged.image?.safety).toBe(commonV1.SafetyAction.FLAGGED);
    expect(passed.image?.safety).toBe(commonV1.SafetyAction.PASSED);
    const off = await check(commonV1.SafetyPolicy.OFF).catch((err: unknown) => err as DopsError);
    expect(off).toMatchObject({ code: 'INVALID_ARGUMENT', violations: [{ field: 'policy' }] });
    const blurred = await check(commonV1.SafetyPolicy.BLUR);
    expect(blurred.action).toBe(commonV1.SafetyAction.BLURRED);
    expect(blurred.image?.path).not.toBe(image);
    expect(blurred.image?.sha256).not.toBe(flagged.image?.sha256);
    const blocked = await check(commonV1.SafetyPolicy.BLOCK);
    expect(blocked).toMatchObject({
      nsfw: true,
      action: commonV1.SafetyAction.BLOCKED,
      blocked: true,
    });
    expect(blocked.image).toBeUndefined();
  });

  it('converts to JPEG; a lower quality gives a smaller file', async () => {
    const convert = (quality: number) =>
      call(
        client.convert,
        { image: 'big.png', format: postprocessingV1.ImageFormat.JPEG, quality, deviceId: '' },
        { deadlineMs: 30_000 },
      );
    const [low, high] = [await convert(10), await convert(95)];
    expect(low.image).toMatchObject({ format: 'jpeg', width: 64, height: 64 });
    expect((await stat(low.image!.path)).size).toBeLessThan((await stat(high.image!.path)).size);
    expect((await readFile(low.image!.path)).subarray(0, 2)).toEqual(Buffer.from([0xff, 0xd8]));
  });

  it.each([
    [
      'a file that is not an image (checked by the worker)',
      { image: 'notes.png' },
      'image',
      'not a readable image',
    ],
    ['a path outside the roots', { image: '/etc/hostname' }, 'image', 'inside the input or artifact root'],
    [
      'a model outside the model roots',
      { modelPath: '/etc/x.safetensors' },
      'model_path',
      'inside a model root',
    ],
    ['a tile size below 32', { tileSize: 16 }, 'tile_size', 'between 32 and 2048'],
    [
      'a model that does not exist (checked by the worker)',
      { modelPath: 'nope.safetensors' },
      'model_path',
      'no such file',
    ],
  ] as const)('refuses %s naming the field', async (_name, overrides, field, description) => {
    const error = await rejection(
      call(
        client.upscale,
        { image: 'in.png', modelPath: UPSCALER, deviceId: '', ...overrides },
        { deadlineMs: 30_000 },
      ),
    );
    expect(['INVALID_ARGUMENT', 'NOT_FOUND']).toContain(error.code);
    expect(error.violations).toEqual([
      expect.objectContaining({ field, description: expect.stringContaining(description) }),
    ]);
  });

  // Every path field of every RPC, each way out of its root: links (file, folder), .., NUL.
  const rpcs = {
    upscale: (image: string, modelPath: string) =>
      call(client.upscale, { image, modelPath, deviceId: '' }, { deadlineMs: 10_000 }),
    restoreFaces: (image: string, modelPath: string) =>
      call(client.restoreFaces, { image, modelPath, deviceId: '' }, { deadlineMs: 10_000 }),
    checkSafety: (image: string, modelPath: string) =>
      call(
        client.checkSafety,
        { image, modelPath, policy: commonV1.SafetyPolicy.FLAG, deviceId: '' },
        { deadlineMs: 10_000 },
      ),
    convert: (image: string) =>
      call(
        client.convert,
        { image, format: postprocessingV1.ImageFormat.PNG, deviceId: '' },
        { deadlineMs: 10_000 },
      ),
  };
  type Rpc = keyof typeof rpcs;
  const imageEscapes = ['file-link.png', 'folder-link/secret.png', '../outside/secret.png', 'in.png\0'];
  const modelEscapes = [
    'file-link.safetensors',
    'folder-link/secret.safetensors',
    '../outside/secret.safetensors',
    `${UPSCALER}\0`,
  ];
  const pathCases: Array<[Rpc, 'image' | 'model_path', string]> = [
    ...(Object.keys(rpcs) as Rpc[]).flatMap((rpc) =>
      imageEscapes.map((p) => [rpc, 'image', p] as [Rpc, 'image', string]),
    ),
    ...(['upscale', 'restoreFaces', 'checkSafety'] as Rpc[]).flatMap((rpc) =>
      modelEscapes.map((p) => [rpc, 'model_path', p] as [Rpc, 'model_path', string]),
    ),
  ];
  it.each(pathCases)('%s refuses %s = %j with INVALID_ARGUMENT naming it', async (rpc, field, path) => {
    const image = field === 'image' ? path : 'in.png';
    const modelPath = field === 'model_path' ? path : UPSCALER;
    const error = await rejection(rpcs[rpc](image, modelPath));
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.violations).toEqual([expect.objectContaining({ field })]);
  });

  it('answers a path outside the roots the same whether the file exists or not', async () => {
    const answer = async (promise: Promise<unknown>) => {
      const e = await rejection(promise);
      return { code: e.code, message: e.message, violations: e.violations };
    };
    const outside = join(root, 'outside');
    for (const rpc of Object.keys(rpcs) as Rpc[]) {
      const existing = await answer(rpcs[rpc](join(outside, 'secret.png'), UPSCALER));
      expect(existing.code).toBe('INVALID_ARGUMENT');
      expect(await answer(rpcs[rpc](join(outside, 'missing.png'), UPSCALER))).toEqual(existing);
    }
    const model = await answer(rpcs.upscale('in.png', join(outside, 'secret.safetensors')));
    expect(model.violations).toEqual([expect.objectContaining({ field: 'model_path' })]);
    expect(await answer(rpcs.upscale('in.png', join(outside, 'missing.safetensors')))).toEqual(model);
  });

  it('refuses a quality for PNG and an unset format before any worker work', async () => {
    const error = await rejection(
      call(
        client.convert,
        { image: 'in.png', format: postprocessingV1.ImageFormat.UNSPECIFIED, quality: 0, deviceId: '' },
        { deadlineMs: 10_000 },
      ),
    );
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.violations.map((v) => v.field).sort()).toEqual(['format', 'quality']);
  });
});
