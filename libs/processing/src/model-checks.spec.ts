import { DopsError } from '@dops/errors';
import { inferenceV1, modelV1, processingV1 } from '@dops/proto';
import type { ModelCatalog } from './model-catalog';
import { checkModels } from './model-checks';

const { ModelType: T, ModelBase: B, ModelStatus: S } = modelV1;
const entry = (over: Partial<modelV1.Model>) => modelV1.Model.fromPartial({ status: S.OK, ...over });
const registry: Record<string, modelV1.Model> = {
  sd15: entry({ id: 'sd15', type: T.CHECKPOINT, base: B.SD1, variant: 'normal' }),
  inpaint: entry({ id: 'inpaint', type: T.CHECKPOINT, base: B.SD1, variant: 'inpaint' }),
  broken: entry({
    id: 'broken',
    type: T.CHECKPOINT,
    base: B.SD1,
    status: S.INVALID,
    reason: 'unet: no weights',
  }),
  'sd15.lora': entry({ path: 'sd15.lora', type: T.LORA, base: B.SD1 }),
  'xl.lora': entry({ path: 'xl.lora', type: T.LORA, base: B.SDXL }),
  'refused.lora': entry({
    path: 'refused.lora',
    type: T.LORA,
    base: B.SD1,
    status: S.REFUSED,
    reason: 'pickle',
  }),
  'x2.up': entry({ path: 'x2.up', type: T.UPSCALER, scale: 2 }),
};
const catalog: ModelCatalog = {
  get: async (ref) => {
    if ('path' in ref && ref.path.startsWith('/etc'))
      throw DopsError.invalidArgument('path', 'must be inside a model root');
    return registry['id' in ref ? ref.id : ref.path];
  },
};

async function outcome(
  params: Partial<inferenceV1.GenerationParams>,
  spec: Partial<processingV1.JobSpec> = {},
  template: 'txt2img' | 'inpaint' = 'txt2img',
): Promise<string> {
  const p = inferenceV1.GenerationParams.fromPartial({ modelId: 'sd15', ...params });
  try {
    await checkModels(catalog, processingV1.JobSpec.fromPartial({ ...spec, params: p }), p, template);
    return 'ok';
  } catch (err) {
    const e = err as DopsError;
    return `${e.code} ${e.violations.map((v) => v.field).join(',')}`;
  }
}

describe('checkModels (the registry checks at submit)', () => {
  it.each([
    ['a known checkpoint with a LoRA of its base', { loras: [{ path: 'sd15.lora' }] }, {}, 'ok'],
    ['an unknown checkpoint', { modelId: 'nope' }, {}, 'NOT_FOUND spec.params.model_id'],
    ['a checkpoint that cannot load', { modelId: 'broken' }, {}, 'FAILED_PRECONDITION spec.params.model_id'],
    ['a LoRA named as the model', { modelId: 'sd15.lora' }, {}, 'INVALID_ARGUMENT spec.params.model_id'],
    [
      'an SDXL LoRA on an SD 1.5 model',
      { loras: [{ path: 'xl.lora' }] },
      {},
      'FAILED_PRECONDITION spec.params.loras[0].path',
    ],
    [
      'a refused LoRA',
      { loras: [{ path: 'refused.lora' }] },
      {},
      'FAILED_PRECONDITION spec.params.loras[0].path',
    ],
    ['a missing LoRA', { loras: [{ path: 'gone.lora' }] }, {}, 'NOT_FOUND spec.params.loras[0].path'],
    [
      'a LoRA outside the roots',
      { loras: [{ path: '/etc/passwd' }] },
      {},
      'INVALID_ARGUMENT spec.params.loras[0].path',
    ],
    [
      'an upscaler named as a ControlNet',
      { controlnets: [{ path: 'x2.up', image: 'a.png' }] },
      {},
      'INVALID_ARGUMENT spec.params.controlnets[0].path',
    ],
    [
      'the wrong upscale factor',
      {},
      { upscale: { modelPath: 'x2.up', scale: 4 } },
      'INVALID_ARGUMENT spec.upscale.scale',
    ],
    ['the right upscale factor', {}, { upscale: { modelPath: 'x2.up', scale: 2 } }, 'ok'],
  ] as const)('%s', async (_name, params, spec, expected) => {
    expect(
      await outcome(params as Partial<inferenceV1.GenerationParams>, spec as Partial<processingV1.JobSpec>),
    ).toBe(expected);
  });

  it('inpaint needs an inpainting model or allow_inpaint_fallback', async () => {
    expect(await outcome({}, {}, 'inpaint')).toBe('FAILED_PRECONDITION spec.template');
    expect(await outcome({ modelId: 'inpaint' }, {}, 'inpaint')).toBe('ok');
    expect(await outcome({ allowInpaintFallback: true }, {}, 'inpaint')).toBe('ok');
  });
});
