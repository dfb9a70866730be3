import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from '../test/safetensors-writer';
import { identifyDiffusersFolder, isSafetyCheckerFolder } from './identify-diffusers';

describe('identifyDiffusersFolder', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeEach(async () => ({ dir, cleanup } = await tempDir()));
  afterEach(() => cleanup());

  async function folder(index: Record<string, unknown>, unet?: Record<string, unknown>): Promise<string> {
    const root = join(dir, 'pipe');
    await mkdir(join(root, 'unet'), { recursive: true });
    await writeFile(join(root, 'model_index.json'), JSON.stringify(index));
    if (unet) await writeFile(join(root, 'unet', 'config.json'), JSON.stringify(unet));
    return root;
  }
  const sdIndex = { _class_name: 'StableDiffusionPipeline', text_encoder: ['transformers', 'CLIPTextModel'] };
  const xlIndex = {
    _class_name: 'StableDiffusionXLPipeline',
    text_encoder: ['transformers', 'CLIPTextModel'],
    text_encoder_2: ['transformers', 'CLIPTextModelWithProjection'],
  };
  const refinerIndex = {
    _class_name: 'StableDiffusionXLImg2ImgPipeline',
    text_encoder: [null, null],
    text_encoder_2: ['transformers', 'CLIPTextModelWithProjection'],
    requires_aesthetics_score: true,
  };

  it.each([
    ['sd1', sdIndex, { in_channels: 4, cross_attention_dim: 768 }, 'normal'],
    ['sd2', sdIndex, { in_channels: 4, cross_attention_dim: 1024, use_linear_projection: true }, 'normal'],
    [
      'sd1',
      { ...sdIndex, _class_name: 'StableDiffusionInpaintPipeline' },
      { in_channels: 9, cross_attention_dim: 768 },
      'inpaint',
    ],
    [
      'sd2',
      { ...sdIndex, _class_name: 'StableDiffusionDepth2ImgPipeline' },
      { in_channels: 5, cross_attention_dim: 1024 },
      'depth',
    ],
    [
      'sdxl',
      xlIndex,
      { in_channels: 4, cross_attention_dim: 2048, addition_embed_type: 'text_time' },
      'normal',
    ],
    [
      'sdxl-refiner',
      refinerIndex,
      { in_channels: 4, cross_attention_dim: 1280, addition_embed_type: 'text_time' },
      'normal',
    ],
  ])('real %s (%#)', async (base, index, unet, variant) => {
    expect(await identifyDiffusersFolder(await folder(index, unet))).toMatchObject({
      type: 'checkpoint',
      format: 'diffusers-folder',
      base,
      variant,
      notes: [],
    });
  });

  it.each([
    ['sd1', sdIndex, { in_channels: 4, cross_attention_dim: 32 }],
    ['sd2', sdIndex, { in_channels: 4, cross_attention_dim: 32, use_linear_projection: true }],
    ['sdxl', xlIndex, { in_channels: 4, cross_attention_dim: 64, addition_embed_type: 'text_time' }],
    [
      'sdxl-refiner',
      refinerIndex,
      { in_channels: 4, cross_attention_dim: 64, addition_embed_type: 'text_time' },
    ],
  ])('tiny %s by structure', async (base, index, unet) => {
    const id = await identifyDiffusersFolder(await folder(index, unet));
    expect(id).toMatchObject({ type: 'checkpoint', base });
    expect(id.notes.join()).toMatch(/structure/);
  });

  it('a foreign pipeline, a missing unet config or broken JSON is unknown with a reason', async () => {
    expect(await identifyDiffusersFolder(await folder({ _class_name: 'FluxPipeline' }, {}))).toMatchObject({
      type: 'unknown',
      reason: expect.stringMatching(/FluxPipeline/),
    });
    await cleanup();
    ({ dir, cleanup } = await tempDir());
    expect(await identifyDiffusersFolder(await folder(sdIndex))).toMatchObject({
      type: 'unknown',
      reason: 'unet/config.json: missing',
    });
    await writeFile(join(dir, 'pipe', 'model_index.json'), '{');
    expect((await identifyDiffusersFolder(join(dir, 'pipe'))).reason).toMatch(
      /model_index.json: not valid JSON/,
    );
  });

  describe('safety checkers', () => {
    async function checker(config: Record<string, unknown>, weights = 'model.safetensors'): Promise<string> {
      const root = join(dir, 'safety_checker');
      await mkdir(root, { recursive: true });
      await writeFile(join(root, 'config.json'), JSON.stringify(config));
      await writeFile(join(root, weights), '');
      return root;
    }

    it.each([
      ['architectures', { architectures: ['StableDiffusionSafetyChecker'], model_type: 'clip' }],
      ['_class_name', { _class_name: 'StableDiffusionSafetyChecker' }],
    ])('a folder whose config.json names the class in %s is one safety checker', async (_, config) => {
      const root = await checker(config);
      expect(await isSafetyCheckerFolder(root)).toBe(true);
      const id = await identifyDiffusersFolder(root);
      expect(id).toMatchObject({ type: 'safety-checker', base: null, format: 'diffusers-folder' });
      expect(id.reason).toBeUndefined();
    });

    it('another class, pickle weights only, or no config is not a safety checker', async () => {
      expect(await isSafetyCheckerFolder(await checker({ architectures: ['CLIPModel'] }))).toBe(false);
      await cleanup();
      ({ dir, cleanup } = await tempDir());
      const pickleOnly = await checker(
        { architectures: ['StableDiffusionSafetyChecker'] },
        'pytorch_model.bin',
      );
      expect(await isSafetyCheckerFolder(pickleOnly)).toBe(false);
      expect(await isSafetyCheckerFolder(dir)).toBe(false);
      expect(await identifyDiffusersFolder(pickleOnly)).toMatchObject({
        type: 'unknown',
        reason: 'model_index.json: missing',
      });
    });
  });
});
