import { DopsError } from '@dops/errors';
import { inferenceV1 } from '@dops/proto';
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
  it('maps defaults to the worker JSON with absolute, confined paths', () => {
    const worker = toWorkerParams(
      { ...base, mode: inferenceV1.Mode.IMG2IMG, initImage: 'a/b.png', loras: [{ path: 'l.safetensors' }] },
      undefined,
      roots,
      extra,
    );
    expect(worker).toMatchObject({
      mode: 'img2img',
      model: 'm',
      scheduler: 'Euler a',
      batchCount: 1,
      initImage: '/data/in/a/b.png',
      loras: [{ path: '/models/l.safetensors', weight: 1 }],
      outputDir: '2024-06-01',
    });
  });

  it('lists every bad field at once, as proto paths', () => {
    expect(
      violations({
        width: 100,
        steps: 0,
        loras: [{ path: '/etc/x.safetensors', weight: 11 }],
        initImage: 'x.png',
      }),
    ).toEqual([
      'params.width',
      'params.steps',
      'params.init_image',
      'params.loras[0].path',
      'params.loras[0].weight',
    ]);
    expect(violations({ mode: inferenceV1.Mode.INPAINT, initImage: '../escape.png' })).toEqual([
      'params.init_image',
      'params.mask',
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
