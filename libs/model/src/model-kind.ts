/** What a model file is, as far as the registry can tell from its tensor names and shapes. */
export type ModelType =
  | 'checkpoint'
  | 'lora'
  | 'controlnet'
  | 'vae'
  | 'upscaler'
  | 'text-embedding'
  | 'face-restorer'
  | 'safety-checker'
  | 'unknown';
export const MODEL_TYPES: readonly ModelType[] = [
  'checkpoint',
  'lora',
  'controlnet',
  'vae',
  'upscaler',
  'text-embedding',
  'face-restorer',
  'safety-checker',
  'unknown',
];

/** The Stable Diffusion family a model belongs to (and therefore loads with). */
export type ModelBase = 'sd1' | 'sd2' | 'sdxl' | 'sdxl-refiner';
export const MODEL_BASES: readonly ModelBase[] = ['sd1', 'sd2', 'sdxl', 'sdxl-refiner'];

/** UNet input layout: 4 latent channels (normal), 9 (inpaint: latent + mask + masked image), 5 (depth). */
export type ModelVariant = 'normal' | 'inpaint' | 'depth';

export type ModelFormat = 'safetensors' | 'diffusers-folder' | 'ckpt';

export interface Identification {
  type: ModelType;
  /** null where the file does not tell (a VAE is shared by sd1/sd2/sdxl; upscalers have none). */
  base: ModelBase | null;
  variant: ModelVariant;
  format: ModelFormat;
  /** Why the type or base is unknown; absent when both are known (or base does not apply). */
  reason?: string;
  /** Evidence that disagreed or was weak, for operators reading `describe`. */
  notes: string[];
  /** LoRA activation words (from training metadata), most useful first. */
  triggerWords: string[];
  /** Upscale factor of an upscaler, where its layout tells; 1 for a face restorer. */
  scale?: number;
}
