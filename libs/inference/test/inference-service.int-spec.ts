import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { DopsError } from '@dops/errors';
import { call, createClient, stream } from '@dops/grpc-client';
import { modelHostService } from '@dops/model-host';
import { inferenceV1, modelHostV1, modelV1 } from '@dops/proto';
import { startTestServer, testCredentials, type TestServer, inferenceWorkerProcess } from '@dops/testing';
import { WorkerPool } from '@dops/worker-pool';
import { type SupervisorLogger } from '@dops/worker-supervisor';
import { Generator, InferenceModels, inferenceService } from '../src/index';

const REPO_ROOT = resolve(__dirname, '../../..');
const FIXTURES = join(REPO_ROOT, 'tools/fixtures/generated');
const CHECKPOINT = join(FIXTURES, 'sd15-tiny.safetensors');
const haveFixtures = existsSync(CHECKPOINT) && existsSync(join(FIXTURES, 'configs'));
const MODEL_ID = 'sd15-tiny';
const DEVICE_ID = 'cpu:0';

if (!haveFixtures) {
  // eslint-disable-next-line no-console
  console.warn(
    `skipping the inference integration test: run \`python tools/fixtures/generate.py --out tools/fixtures/generated\` (missing ${CHECKPOINT})`,
  );
}

function params(overrides: Partial<inferenceV1.GenerationParams> = {}): inferenceV1.GenerationParams {
  return {
    modelId: MODEL_ID,
    mode: inferenceV1.Mode.TXT2IMG,
    prompt: 'a tiny red cube',
    negativePrompt: '',
    width: 64,
    height: 64,
    steps: 2,
    seed: 1234,
    batchCount: 1,
    scheduler: 'Euler',
    initImage: '',
    mask: '',
    loras: [],
    controlnets: [],
    allowInpaintFallback: false,
    ...overrides,
  };
}

/** tEXt and iTXt chunks of a PNG, by keyword. */
function pngText(png: Buffer): Record<string, string> {
  const text: Record<string, string> = {};
  for (let at = 8; at + 8 <= png.length; ) {
    const length = png.readUInt32BE(at);
    const type = png.toString('latin1', at + 4, at + 8);
    const data = png.subarray(at + 8, at + 8 + length);
    const nul = data.indexOf(0);
    if (type === 'tEXt') text[data.toString('latin1', 0, nul)] = data.toString('latin1', nul + 1);
    if (type === 'iTXt') {
      // keyword\0 flag method lang\0 translated\0 text (uncompressed here)
      const langEnd = data.indexOf(0, nul + 3);
      const translatedEnd = data.indexOf(0, langEnd + 1);
      text[data.toString('latin1', 0, nul)] = data.toString('utf8', translatedEnd + 1);
    }
    at += 12 + length;
  }
  return text;
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

const log = process.env['DOPS_TEST_LOG'] === '1';
// eslint-disable-next-line no-console
const print = (level: string) => (fields: object, msg?: string) =>
  log ? console.log(level, msg, JSON.stringify(fields)) : undefined;
const quietLogger: SupervisorLogger = {
  debug: () => undefined,
  info: print('info'),
  warn: print('warn'),
  error: print('error'),
  child: () => quietLogger,
};

(haveFixtures ? describe : describe.skip)('InferenceService over a real Python worker (cpu)', () => {
  let root: string;
  let pool: WorkerPool;
  let server: TestServer;
  let client: inferenceV1.InferenceServiceClient;
  let hostClient: modelHostV1.ModelHostServiceClient;

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'dops-inference-'));
    const artifactRoot = join(root, 'artifacts');
    const inputRoot = join(root, 'inputs');
    // Copies, so a concurrent regeneration of the shared fixtures cannot pull them away mid-test.
    const models = join(root, 'models');
    await cp(CHECKPOINT, join(models, 'sd15-tiny.safetensors'));
    await cp(join(FIXTURES, 'configs'), join(models, 'configs'), { recursive: true });
    // Files outside every root, and links from inside the roots to them (file and folder links).
    const outside = join(root, 'outside');
    await mkdir(outside);
    await mkdir(inputRoot, { recursive: true });
    await writeFile(join(outside, 'secret.png'), 'not for clients');
    await writeFile(join(outside, 'secret.safetensors'), 'not for clients');
    await symlink(join(outside, 'secret.png'), join(inputRoot, 'file-link.png'));
    await symlink(outside, join(inputRoot, 'folder-link'));
    await symlink(join(outside, 'secret.safetensors'), join(models, 'file-link.safetensors'));
    await symlink(outside, join(models, 'folder-link'));
    pool = new WorkerPool({
      name: 'inference-test',
      backend: 'cpu',
      logger: quietLogger,
      supervisor: {
        ...inferenceWorkerProcess({ artifactRoot: artifactRoot, inputRoot: inputRoot, modelRoots: models }),
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
    const host = new InferenceModels(pool);
    const generator = new Generator(host, { inputRoot, modelRoots: [models] });
    server = await startTestServer([
      inferenceService(generator, host),
      modelHostService(host, { modelRoots: [models], configDir: join(models, 'configs') }),
    ]);
    client = createClient(inferenceV1.InferenceServiceClient, server.address, {
      credentials: testCredentials('ops'),
    });
    hostClient = createClient(modelHostV1.ModelHostServiceClient, server.address, {
      credentials: testCredentials('model', 'mtls'),
    });
    await call(
      hostClient.loadModel,
      {
        modelId: MODEL_ID,
        path: join(models, 'sd15-tiny.safetensors'),
        deviceId: DEVICE_ID,
        tier: modelV1.Tier.VRAM,
        configDir: '',
      },
      { deadlineMs: 60_000 },
    );
  }, 90_000);

  afterAll(async () => {
    client?.close();
    hostClient?.close();
    await server?.stop();
    await pool?.stop();
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('reports the capabilities of the loaded model', async () => {
    const { models } = await call(client.getCapabilities, { modelId: '', deviceId: '' });
    expect(models).toHaveLength(1);
    expect(models[0]).toMatchObject({
      modelId: MODEL_ID,
      deviceId: DEVICE_ID,
      base: 'sd15',
      inpaintModel: false,
    });
    expect(models[0]!.schedulers).toContain('Euler a');
    expect(models[0]!.size?.multiple).toBe(8);
  });

  let firstSha = '';
  it('generates txt2img: a PNG whose sha256 and size match the reply and whose text chunk has the seed', async () => {
    const { result } = await call(
      client.generate,
      { params: params(), deviceId: '' },
      { deadlineMs: 30_000 },
    );
    expect(result?.deviceId).toBe(DEVICE_ID);
    expect(result?.seed).toBe(1234);
    const [image] = result!.images;
    const png = await readFile(image!.artifact!.path);
    firstSha = createHash('sha256').update(png).digest('hex');
    expect(image!.artifact).toMatchObject({ sha256: firstSha, width: 64, height: 64, format: 'png' });
    expect(png.readUInt32BE(16)).toBe(64); // IHDR width
    expect(png.readUInt32BE(20)).toBe(64);
    const dops = JSON.parse(pngText(png)['dops']!);
    expect(dops).toMatchObject({
      seed: 1234,
      steps: 2,
      width: 64,
      height: 64,
      scheduler: 'Euler',
      prompt: 'a tiny red cube',
    });
    expect(pngText(png)['parameters']).toContain('Seed: 1234');
  });

  it('gives the same bytes for the same seed', async () => {
    const { result } = await call(
      client.generate,
      { params: params(), deviceId: '' },
      { deadlineMs: 30_000 },
    );
    expect(result!.images[0]!.artifact!.sha256).toBe(firstSha);
  });

  it('streams stage changes and progress 1..N, then the result', async () => {
    const messages: inferenceV1.GenerateStreamResponse[] = [];
    for await (const m of stream(client.generateStream, {
      params: params({ steps: 3 }),
      deviceId: '',
      previewIntervalSeconds: 0,
    }))
      messages.push(m);
    const steps = messages.filter((m) => m.progress).map((m) => [m.progress!.step, m.progress!.total]);
    expect(steps).toEqual([
      [1, 3],
      [2, 3],
      [3, 3],
    ]);
    expect(messages.filter((m) => m.stage).map((m) => m.stage!.stage)).toEqual([
      inferenceV1.Stage.SCHEDULED,
      inferenceV1.Stage.DENOISING,
      inferenceV1.Stage.DECODING,
    ]);
    expect(messages.at(-1)?.result?.images).toHaveLength(1);
  });

  it('stops when the client cancels mid-stream; the next request succeeds promptly', async () => {
    const controller = new AbortController();
    let progressSeen = 0;
    const error = await rejection(
      (async () => {
        for await (const m of stream(
          client.generateStream,
          { params: params({ steps: 150 }), deviceId: '', previewIntervalSeconds: 0 },
          { signal: controller.signal },
        )) {
          if (m.progress) {
            progressSeen += 1;
            controller.abort();
          }
        }
      })(),
    );
    expect(error.code).toBe('CANCELLED');
    expect(progressSeen).toBeGreaterThanOrEqual(1);
    const started = Date.now();
    const { result } = await call(
      client.generate,
      { params: params({ seed: 7 }), deviceId: '' },
      { deadlineMs: 30_000 },
    );
    expect(result!.images).toHaveLength(1);
    expect(Date.now() - started).toBeLessThan(15_000);
  });

  it('fails DEADLINE_EXCEEDED when the deadline passes mid-generation', async () => {
    const error = await rejection(
      call(client.generate, { params: params({ steps: 150 }), deviceId: '' }, { deadlineMs: 400 }),
    );
    expect(error.code).toBe('DEADLINE_EXCEEDED');
    // The worker stopped: the next request is served.
    const { result } = await call(
      client.generate,
      { params: params(), deviceId: '' },
      { deadlineMs: 30_000 },
    );
    expect(result!.images[0]!.artifact!.sha256).toBe(firstSha);
  });

  it('maps a field the worker checks (a LoRA file that does not exist) to its proto name', async () => {
    const error = await rejection(
      call(
        client.generate,
        { params: params({ loras: [{ path: 'no-such-lora.safetensors' }] }), deviceId: '' },
        { deadlineMs: 10_000 },
      ),
    );
    expect(error.code).toBe('NOT_FOUND');
    expect(error.violations.map((v) => v.field)).toEqual(['params.loras[0].path']);
  });

  it('generates from a prompt longer than one 75-token CLIP chunk; refuses one over 20,000 characters', async () => {
    const { result } = await call(
      client.generate,
      { params: params({ prompt: 'cube '.repeat(200) }), deviceId: '' },
      { deadlineMs: 60_000 },
    );
    expect(result!.images).toHaveLength(1);
    const error = await rejection(
      call(
        client.generate,
        { params: params({ prompt: 'x'.repeat(20_001) }), deviceId: '' },
        { deadlineMs: 10_000 },
      ),
    );
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.violations.map((v) => v.field)).toEqual(['params.prompt']);
  });

  it('loads the model again into a restarted worker; the next request succeeds', async () => {
    await pool.get(DEVICE_ID).supervisor.reset();
    const { result } = await call(
      client.generate,
      { params: params(), deviceId: '' },
      { deadlineMs: 60_000 },
    );
    expect(result!.images[0]!.artifact!.sha256).toBe(firstSha);
  }, 90_000);

  describe('rejects before any worker work', () => {
    let generateCalls: jest.SpyInstance;
    beforeEach(() => {
      const { supervisor } = pool.get(DEVICE_ID);
      const original = supervisor.request.bind(supervisor);
      generateCalls = jest
        .spyOn(supervisor, 'request')
        .mockImplementation((method, ...rest) => original(method, ...rest));
    });
    afterEach(() => {
      expect(generateCalls.mock.calls.filter(([method]) => method === 'inference.generate')).toHaveLength(0);
      generateCalls.mockRestore();
    });

    it.each([
      ['width 100', { width: 100 }, 'INVALID_ARGUMENT', 'params.width', 'multiple of 8'],
      ['steps 0', { steps: 0 }, 'INVALID_ARGUMENT', 'params.steps', 'between 1 and'],
      [
        'an unknown scheduler',
        { scheduler: 'Nope' },
        'INVALID_ARGUMENT',
        'params.scheduler',
        'must be one of',
      ],
      [
        'an init image outside the input root',
        { mode: inferenceV1.Mode.IMG2IMG, initImage: '/etc/passwd' },
        'INVALID_ARGUMENT',
        'params.init_image',
        'inside the input root',
      ],
      [
        'inpaint on a non-inpaint model',
        { mode: inferenceV1.Mode.INPAINT, initImage: 'init.png', mask: 'mask.png' },
        'FAILED_PRECONDITION',
        'params.mode',
        'inpainting',
      ],
      [
        'a model that is not loaded',
        { modelId: 'not-loaded' },
        'FAILED_PRECONDITION',
        'params.model_id',
        'not loaded',
      ],
    ] as const)('%s', async (_name, overrides, code, field, description) => {
      const error = await rejection(
        call(client.generate, { params: params(overrides), deviceId: '' }, { deadlineMs: 10_000 }),
      );
      expect(error.code).toBe(code);
      expect(error.violations).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ field, description: expect.stringContaining(description) }),
        ]),
      );
    });

    // Every path field of Generate, each way out of its root: links (file, folder), .., NUL.
    const pathFields: Record<string, (path: string) => Partial<inferenceV1.GenerationParams>> = {
      'params.init_image': (path) => ({ mode: inferenceV1.Mode.IMG2IMG, initImage: path }),
      'params.mask': (path) => ({ mode: inferenceV1.Mode.INPAINT, initImage: 'init.png', mask: path }),
      'params.loras[0].path': (path) => ({ loras: [{ path }] }),
      'params.controlnets[0].path': (path) => ({ controlnets: [{ path, image: 'hint.png' }] }),
      'params.controlnets[0].image': (path) => ({ controlnets: [{ path: 'cn.safetensors', image: path }] }),
    };
    const isImage = (field: string) => !field.endsWith('.path');
    const escapes = (field: string) =>
      isImage(field)
        ? ['file-link.png', 'folder-link/secret.png', '../outside/secret.png', 'in.png\0']
        : [
            'file-link.safetensors',
            'folder-link/secret.safetensors',
            '../outside/secret.safetensors',
            'x.safetensors\0',
          ];
    it.each(Object.keys(pathFields).flatMap((field) => escapes(field).map((path) => [field, path] as const)))(
      'refuses %s = %j with INVALID_ARGUMENT naming it',
      async (field, path) => {
        const error = await rejection(
          call(
            client.generate,
            { params: params(pathFields[field]!(path)), deviceId: '' },
            { deadlineMs: 10_000 },
          ),
        );
        expect(error.code).toBe('INVALID_ARGUMENT');
        expect(error.violations).toEqual([expect.objectContaining({ field })]);
      },
    );

    it.each(Object.keys(pathFields))(
      'answers %s outside its root the same whether the file exists or not',
      async (field) => {
        const answer = async (name: string) => {
          const e = await rejection(
            call(
              client.generate,
              { params: params(pathFields[field]!(join(root, 'outside', name))), deviceId: '' },
              { deadlineMs: 10_000 },
            ),
          );
          return { code: e.code, message: e.message, violations: e.violations };
        };
        const ext = isImage(field) ? 'png' : 'safetensors';
        const existing = await answer(`secret.${ext}`);
        expect(existing.code).toBe('INVALID_ARGUMENT');
        expect(await answer(`missing.${ext}`)).toEqual(existing);
      },
    );
  });
});
