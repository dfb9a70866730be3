import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DopsError } from '@dops/errors';
import { inferenceV1, workerV1 } from '@dops/proto';
import { protoFieldOf, toWorkerParams, withProtoFields } from './generation-request';

const roots = { inputRoot: '/data/in', modelRoots: ['/models'] };
const extra = { outputDir: '2024-06-01', previewIntervalSeconds: 0 };
const base: inferenceV1.GenerationParams = {
  modelId: 'm',
  mode: inferenceV1.Mode.UNSPECIFIED,
  prompt: 'p',
  negativePrompt: '',
  batchCount: 0,
  scheduler: '',
  initImage: '',
  mask: '',
  loras: [],
  controlnets: [],
  allowInpaintFallback: false,
};

function violations(params: Partial<inferenceV1.GenerationParams>): string[] {
  try {
    toWorkerParams({ ...base, ...params }, undefined, roots, extra);
  } catch (err) {
    return (err as DopsError).violations.map((v) => v.field);
  }
  return [];
}

describe('toWorkerParams', () => {
  it('writes the proto3 JSON of dops.worker.v1.GenerateParams: confined absolute paths, defaults left to the worker', () => {
    const worker = toWorkerParams(
      { ...base, mode: inferenceV1.Mode.IMG2IMG, initImage: 'a/b.png', loras: [{ path: 'l.safetensors' }] },
      undefined,
      roots,
      extra,
    );
    expect(worker).toMatchObject({
      mode: 'img2img',
      model: 'm',
      initImage: '/data/in/a/b.png',
      loras: [{ path: '/models/l.safetensors' }],
      outputDir: '2024-06-01',
    });
    // proto3 JSON: unset and default values are absent; the worker applies its defaults.
    expect(worker).not.toHaveProperty('scheduler');
    expect(worker).not.toHaveProperty('batchCount');
    expect(worker.loras).toEqual([{ path: '/models/l.safetensors' }]);
    expect(workerV1.GenerateParams.fromJSON(worker).model).toBe('m');
  });

  it('carries every GenerationParams field into the worker message under the same name (or a mapped one)', () => {
    const renamed: Record<string, string> = { modelId: 'model' };
    const generation = Object.keys(inferenceV1.GenerationParams.fromPartial({}));
    const worker = Object.keys(workerV1.GenerateParams.fromPartial({}));
    for (const field of generation) expect(worker).toContain(renamed[field] ?? field);
  });

  it('lists every bad field at once, as proto paths', () => {
    expect(
      violations({
        width: 100,
        steps: 0,
        loras: [{ path: '/etc/x.safetensors', weight: 11 }],
        initImage: 'x.png',
      }),
    ).toEqual(
      expect.arrayContaining([
        'params.width',
        'params.steps',
        'params.init_image',
        'params.loras[0].path',
        'params.loras[0].weight',
      ]),
    );
    expect(violations({ mode: inferenceV1.Mode.INPAINT, initImage: '../escape.png' }).sort()).toEqual([
      'params.init_image',
      'params.mask',
    ]);
  });
});

describe('toWorkerParams path fields', () => {
  let dir: string;
  let linked: { inputRoot: string; modelRoots: string[] };
  beforeAll(() => {
    dir = realpathSync(mkdtempSync(join(tmpdir(), 'dops-generation-paths-')));
    linked = { inputRoot: join(dir, 'in'), modelRoots: [join(dir, 'models')] };
    for (const d of [linked.inputRoot, linked.modelRoots[0]!, join(dir, 'outside')]) mkdirSync(d);
    writeFileSync(join(dir, 'outside', 'secret.png'), 's');
    writeFileSync(join(linked.modelRoots[0]!, 'real.ckpt'), 'pickle');
    symlinkSync(join(dir, 'outside', 'secret.png'), join(linked.inputRoot, 'file-link.png'));
    symlinkSync(join(dir, 'outside'), join(linked.inputRoot, 'folder-link'));
    symlinkSync(join(dir, 'outside'), join(linked.modelRoots[0]!, 'folder-link'));
    symlinkSync(
      join(linked.modelRoots[0]!, 'real.ckpt'),
      join(linked.modelRoots[0]!, 'disguised.safetensors'),
    );
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const fields = (params: Partial<inferenceV1.GenerationParams>) => {
    try {
      toWorkerParams({ ...base, ...params }, undefined, linked, extra);
    } catch (err) {
      return (err as DopsError).violations;
    }
    return [];
  };

  it('refuses an image path that leaves the input root (file or folder link, .., NUL) in every image field', () => {
    const paths = [
      'file-link.png',
      'folder-link/secret.png',
      'folder-link/missing.png',
      '../outside/secret.png',
      'a.png\0',
    ];
    for (const path of paths) {
      expect(fields({ mode: inferenceV1.Mode.IMG2IMG, initImage: path }).map((v) => v.field)).toEqual([
        'params.init_image',
      ]);
      expect(
        fields({ mode: inferenceV1.Mode.INPAINT, initImage: 'i.png', mask: path }).map((v) => v.field),
      ).toEqual(['params.mask']);
      expect(fields({ controlnets: [{ path: 'cn', image: path }] }).map((v) => v.field)).toEqual([
        'params.controlnets[0].image',
      ]);
    }
  });

  it('refuses a model path that leaves the model roots, and a .safetensors name over a pickle', () => {
    for (const path of ['folder-link/secret.png', '../outside/x.safetensors', 'x.safetensors\0']) {
      expect(fields({ loras: [{ path }] }).map((v) => v.field)).toEqual(['params.loras[0].path']);
      expect(fields({ controlnets: [{ path, image: 'h.png' }] }).map((v) => v.field)).toEqual([
        'params.controlnets[0].path',
      ]);
    }
    // The name says safetensors; the file the worker would open is a pickle.
    expect(fields({ loras: [{ path: 'disguised.safetensors' }] })).toEqual([
      { field: 'params.loras[0].path', description: 'must be a .safetensors file' },
    ]);
  });

  it('answers an outside path the same whether it exists or not', () => {
    const answer = (name: string) =>
      fields({ mode: inferenceV1.Mode.IMG2IMG, initImage: join(dir, 'outside', name) });
    expect(answer('secret.png')).toEqual(answer('missing.png'));
    expect(answer('secret.png')).toEqual([
      { field: 'params.init_image', description: 'must be inside the input root' },
    ]);
  });
});

describe('worker fields', () => {
  it('become proto paths', () => {
    expect(protoFieldOf('model')).toBe('params.model_id');
    expect(protoFieldOf('controlnets[1].conditioningScale')).toBe('params.controlnets[1].conditioning_scale');
    const err = withProtoFields(DopsError.invalidArgument('negativePrompt', 'too long')) as DopsError;
    expect(err.message).toBe('params.negative_prompt: too long');
    expect(err.violations).toEqual([{ field: 'params.negative_prompt', description: 'too long' }]);
  });
});
