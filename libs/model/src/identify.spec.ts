import { join } from 'node:path';
import {
  codeFormer,
  diffusersControlNet,
  esrganNew,
  esrganOld,
  gfpgan,
  kohyaLora,
  originalCheckpoint,
  originalControlNet,
  peftLora,
  restoreFormer,
  srvgg,
} from '../test/model-layouts';
import { tempDir, writeSafetensors, type TensorSpec } from '../test/safetensors-writer';
import { vae } from '../test/model-layouts';
import { identifyTensors } from './identify';
import type { Identification } from './model-kind';
import { readSafetensorsHeader } from './safetensors-header';

describe('identifyTensors', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeAll(async () => ({ dir, cleanup } = await tempDir()));
  afterAll(() => cleanup());

  let n = 0;
  /** Writes a real file and identifies it from its header, as the registry does. */
  async function identify(
    tensors: Record<string, TensorSpec>,
    metadata?: Record<string, string>,
  ): Promise<Identification> {
    const path = join(dir, `m${n++}.safetensors`);
    await writeSafetensors(path, tensors, metadata);
    const header = await readSafetensorsHeader(path);
    return identifyTensors(header.tensors, header.metadata);
  }

  describe('checkpoints in original layout, real widths', () => {
    it.each([
      ['sd1', 768, 'sd1'],
      ['sd2', 1024, 'sd2'],
      ['sdxl', 2048, 'sdxl'],
      ['sdxl-refiner', 1280, 'sdxl-refiner'],
    ] as const)('%s (context width %i)', async (encoders, width, base) => {
      const id = await identify(
        originalCheckpoint({ width, encoders, channels: encoders === 'sdxl-refiner' ? 384 : 320 }),
      );
      expect(id).toMatchObject({
        type: 'checkpoint',
        base,
        variant: 'normal',
        format: 'safetensors',
        notes: [],
      });
      expect(id.reason).toBeUndefined();
    });

    it.each([
      [9, 'inpaint'],
      [5, 'depth'],
      [4, 'normal'],
    ] as const)('UNet with %i input channels is %s', async (inChannels, variant) => {
      const id = await identify(originalCheckpoint({ width: 1024, encoders: 'sd2', inChannels }));
      expect(id).toMatchObject({ type: 'checkpoint', base: 'sd2', variant });
    });

    it('an sdxl inpaint checkpoint', async () => {
      expect(
        await identify(originalCheckpoint({ width: 2048, encoders: 'sdxl', inChannels: 9 })),
      ).toMatchObject({ base: 'sdxl', variant: 'inpaint' });
    });

    it('a UNet-only checkpoint by width alone', async () => {
      expect(await identify(originalCheckpoint({ width: 768, encoders: 'none' }))).toMatchObject({
        type: 'checkpoint',
        base: 'sd1',
      });
    });

    it('lets a real width win over contradicting structure, with a note', async () => {
      const id = await identify(originalCheckpoint({ width: 1024, encoders: 'sd1' }));
      expect(id.base).toBe('sd2');
      expect(id.notes.join()).toMatch(/width wins/);
    });
  });

  describe('tiny checkpoints, by structure', () => {
    it.each(['sd1', 'sd2', 'sdxl', 'sdxl-refiner'] as const)('%s', async (encoders) => {
      const id = await identify(originalCheckpoint({ width: 32, encoders, channels: 8 }));
      expect(id).toMatchObject({ type: 'checkpoint', base: encoders });
    });

    it('a tiny UNet-only sd1 by its conv proj_in, sdxl by label_emb', async () => {
      expect((await identify(originalCheckpoint({ width: 32, encoders: 'none', channels: 8 }))).base).toBe(
        'sd2',
      ); // linear proj_in
      const sd1 = originalCheckpoint({ width: 32, encoders: 'none', channels: 8 });
      sd1['model.diffusion_model.input_blocks.4.1.proj_in.weight'] = { shape: [16, 16, 1, 1] };
      expect((await identify(sd1)).base).toBe('sd1');
      const xl = { ...sd1, 'model.diffusion_model.label_emb.0.0.weight': { shape: [32, 64] } };
      expect((await identify(xl)).base).toBe('sdxl');
    });
  });

  describe('LoRA', () => {
    it('kohya sd1 with text encoder, trigger words from metadata', async () => {
      const tags = { '10_sks dog': { 'sks dog': 40, grass: 5, ' outdoors': 9 }, '5_other': { grass: 7 } };
      const id = await identify(kohyaLora({ te: 'te', teWidth: 768, unetWidth: 768 }), {
        ss_tag_frequency: JSON.stringify(tags),
        ss_output_name: 'sksdog_v1',
        'modelspec.trigger_phrase': 'sks dog, best quality',
      });
      expect(id).toMatchObject({ type: 'lora', base: 'sd1' });
      expect(id.triggerWords).toEqual(['sks dog', 'best quality', 'sksdog_v1', 'grass', 'outdoors']);
    });

    it('kohya sd2 by text-encoder width when the UNet part is absent', async () => {
      const layout = kohyaLora({ te: 'te', teWidth: 1024, unetWidth: 1024 });
      for (const k of Object.keys(layout)) if (k.startsWith('lora_unet_')) delete layout[k];
      expect(await identify(layout)).toMatchObject({ type: 'lora', base: 'sd2' });
    });

    it('kohya sdxl (te1 + te2), real and tiny widths', async () => {
      expect(await identify(kohyaLora({ te: 'te1+te2', unetWidth: 2048, sdxlNames: true }))).toMatchObject({
        type: 'lora',
        base: 'sdxl',
      });
      expect(
        await identify(kohyaLora({ te: 'te1+te2', teWidth: 32, te2Width: 32, unetWidth: 32 })),
      ).toMatchObject({ base: 'sdxl' });
    });

    it('UNet-only LoRA: real width, else metadata', async () => {
      expect((await identify(kohyaLora({ te: 'none', unetWidth: 2048 }))).base).toBe('sdxl');
      expect(
        (
          await identify(kohyaLora({ te: 'none', unetWidth: 16 }), {
            ss_base_model_version: 'sdxl_base_v1-0',
          })
        ).base,
      ).toBe('sdxl');
      expect(
        (
          await identify(kohyaLora({ te: 'none', unetWidth: 16 }), {
            'modelspec.architecture': 'stable-diffusion-v1/lora',
          })
        ).base,
      ).toBe('sd1');
      const unknownBase = await identify(kohyaLora({ te: 'none', unetWidth: 16 }));
      expect(unknownBase).toMatchObject({ type: 'lora', base: null });
      expect(unknownBase.reason).toMatch(/base/);
    });

    it('peft / diffusers keys', async () => {
      expect(await identify(peftLora(768, ['text_encoder']))).toMatchObject({ type: 'lora', base: 'sd1' });
      expect(await identify(peftLora(2048, ['text_encoder', 'text_encoder_2']))).toMatchObject({
        type: 'lora',
        base: 'sdxl',
      });
      expect(await identify(peftLora(16, ['text_encoder_2']))).toMatchObject({ type: 'lora', base: 'sdxl' });
    });
  });

  describe('ControlNet', () => {
    it.each([
      [768, false, 'sd1'],
      [1024, false, 'sd2'],
      [2048, true, 'sdxl'],
    ] as const)('original layout, width %i', async (width, sdxl, base) => {
      expect(await identify(originalControlNet(width, sdxl))).toMatchObject({ type: 'controlnet', base });
    });

    it('diffusers layout, real and tiny sdxl', async () => {
      expect(await identify(diffusersControlNet(768))).toMatchObject({ type: 'controlnet', base: 'sd1' });
      expect(await identify(diffusersControlNet(32, true))).toMatchObject({
        type: 'controlnet',
        base: 'sdxl',
      });
    });
  });

  it('VAE, with no base', async () => {
    const id = await identify(vae());
    expect(id).toMatchObject({ type: 'vae', base: null });
    expect(id.reason).toBeUndefined();
  });

  it('a VAE with foreign keys is not a VAE', async () => {
    expect((await identify({ ...vae(), 'model.x': { shape: [1] } })).type).toBe('unknown');
  });

  describe('upscalers', () => {
    it.each([
      [3, 4],
      [12, 2],
      [48, 1],
    ])('new-layout ESRGAN with %i input channels is x%i', async (inChannels, scale) => {
      expect(await identify(esrganNew(inChannels))).toMatchObject({ type: 'upscaler', base: null, scale });
    });

    it('old-layout ESRGAN', async () => {
      expect(await identify(esrganOld())).toMatchObject({ type: 'upscaler' });
    });

    it.each([2, 4])('SRVGG compact x%i', async (scale) => {
      expect(await identify(srvgg(scale))).toMatchObject({ type: 'upscaler', scale });
    });
  });

  describe('face restorers', () => {
    it.each([
      ['RestoreFormer', restoreFormer()],
      ['GFPGAN', gfpgan()],
      ['CodeFormer', codeFormer()],
    ])('%s, at scale 1 with no base', async (architecture, layout) => {
      const id = await identify(layout);
      expect(id).toMatchObject({ type: 'face-restorer', base: null, scale: 1 });
      expect(id.reason).toBeUndefined();
      expect(id.notes.join()).toMatch(architecture);
    });

    it('RestoreFormer is not taken for a VAE, nor a VAE for RestoreFormer', async () => {
      expect((await identify(restoreFormer())).type).not.toBe('vae');
      expect((await identify(vae())).type).toBe('vae');
      // A VQ model without RestoreFormer's two-input attention norms is no known face restorer.
      const plainVq: Record<string, TensorSpec> = {
        ...vae(),
        'quantize.embedding.weight': { shape: [16, 4] },
      };
      expect((await identify(plainVq)).type).toBe('unknown');
    });
  });

  describe('text embeddings', () => {
    it.each([
      [768, 'sd1'],
      [1024, 'sd2'],
    ] as const)('emb_params of width %i', async (width, base) => {
      expect(await identify({ emb_params: { shape: [4, width] } })).toMatchObject({
        type: 'text-embedding',
        base,
      });
    });

    it('clip_l + clip_g is sdxl', async () => {
      expect(await identify({ clip_g: { shape: [2, 1280] }, clip_l: { shape: [2, 768] } })).toMatchObject({
        type: 'text-embedding',
        base: 'sdxl',
      });
    });

    it('string_to_param', async () => {
      expect(await identify({ 'string_to_param.*': { shape: [1, 768] } })).toMatchObject({
        type: 'text-embedding',
        base: 'sd1',
      });
    });
  });

  it('unknown layouts get a reason naming some keys', async () => {
    const id = await identify({ 'transformer.blocks.0.weight': { shape: [4] } });
    expect(id).toMatchObject({ type: 'unknown', base: null });
    expect(id.reason).toMatch(/transformer\.blocks\.0\.weight/);
    expect((await identify({})).reason).toMatch(/no tensors/);
  });
});
