import type { Identification, ModelBase, ModelFormat, ModelVariant } from './model-kind';
import { extractTriggerWords } from './trigger-words';

/** Tensor name → shape; all identification needs (safetensors headers give exactly this). */
export type TensorShapes = Readonly<Record<string, { readonly shape: readonly number[] }>>;

/** Cross-attention context width (text-encoder output) of each base at real size. */
const BASE_BY_CONTEXT_WIDTH: Readonly<Record<number, ModelBase>> = {
  768: 'sd1',
  1024: 'sd2',
  2048: 'sdxl',
  1280: 'sdxl-refiner',
};
/** Hidden width of the text encoder a LoRA adapts: CLIP ViT-L (sd1, sdxl te1), OpenCLIP ViT-H (sd2), ViT-bigG (sdxl te2). */
const BASE_BY_TEXT_ENCODER_WIDTH: Readonly<Record<number, ModelBase>> = {
  768: 'sd1',
  1024: 'sd2',
  1280: 'sdxl',
};
const VARIANT_BY_IN_CHANNELS: Readonly<Record<number, ModelVariant>> = {
  4: 'normal',
  9: 'inpaint',
  5: 'depth',
};

const UNET = 'model.diffusion_model.';
const CONTEXT_KEY = `${UNET}input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight`;
const IN_CHANNELS_KEY = `${UNET}input_blocks.0.0.weight`;

/**
 * Identifies a single-file model from its tensor names and shapes (and, for a LoRA, its
 * safetensors metadata). Real widths decide the base; tiny test models are told apart by
 * structure (which text encoders and embedders exist). Never throws: unknown type → 'unknown'
 * with `reason`.
 */
export function identifyTensors(
  tensors: TensorShapes,
  metadata: Record<string, unknown> = {},
  format: ModelFormat = 'safetensors',
): Identification {
  const keys = new KeyIndex(tensors);
  const result: Identification = {
    type: 'unknown',
    base: null,
    variant: 'normal',
    format,
    notes: [],
    triggerWords: [],
  };

  if (
    keys.some(
      (k) =>
        /^lora_(unet|te[12]?)_/.test(k) ||
        /\.(lora_[AB]|lora_down|lora_up|lora\.down|lora\.up)\.weight$/.test(k),
    )
  ) {
    identifyLora(keys, metadata, result);
  } else if (
    keys.some((k) =>
      /^(control_model\.|controlnet_cond_embedding\.|controlnet_down_blocks\.|input_hint_block\.)/.test(k),
    )
  ) {
    identifyControlNet(keys, result);
  } else if (keys.hasPrefix(UNET)) {
    identifyCheckpoint(keys, result);
  } else if (identifyFaceRestorer(keys, result)) {
    // result filled in place; before the VAE rule: RestoreFormer's encoder/decoder read as a VAE's
  } else if (isVae(keys)) {
    result.type = 'vae';
    result.notes.push('the VAE architecture is shared by sd1, sd2 and sdxl; base is not told by shapes');
  } else if (identifyUpscaler(keys, result)) {
    // result filled in place
  } else if (!identifyTextEmbedding(keys, result)) {
    const sample = keys.names.slice(0, 3).join(', ');
    result.reason =
      keys.names.length === 0 ? 'file holds no tensors' : `no known tensor layout (first keys: ${sample})`;
  }
  if (
    result.type !== 'unknown' &&
    result.base === null &&
    result.reason === undefined &&
    needsBase(result.type)
  ) {
    result.reason = `base of this ${result.type} is not told by its tensors or metadata`;
  }
  return result;
}

function needsBase(type: Identification['type']): boolean {
  return type === 'checkpoint' || type === 'lora' || type === 'controlnet' || type === 'text-embedding';
}

function identifyCheckpoint(keys: KeyIndex, out: Identification): void {
  out.type = 'checkpoint';
  // Text encoders / embedders present in the file (structure works at any width).
  let structural: ModelBase | null = null;
  if (keys.hasPrefix('conditioner.embedders.1.')) structural = 'sdxl';
  else if (keys.hasPrefix('conditioner.embedders.0.model.'))
    structural = 'sdxl-refiner'; // refiner: OpenCLIP bigG only
  else if (keys.hasPrefix('cond_stage_model.transformer.')) structural = 'sd1';
  else if (keys.hasPrefix('cond_stage_model.model.')) structural = 'sd2';
  else structural = unetStructuralBase(keys, UNET);

  const width =
    keys.shape(CONTEXT_KEY)?.[1] ??
    keys.firstShape((k) => k.startsWith(UNET) && k.endsWith('attn2.to_k.weight'))?.[1];
  out.base = chooseBase(width, BASE_BY_CONTEXT_WIDTH, structural, 'cross-attention width', out);

  const inChannels = keys.shape(IN_CHANNELS_KEY)?.[1];
  if (inChannels !== undefined) {
    const variant = VARIANT_BY_IN_CHANNELS[inChannels];
    if (variant) out.variant = variant;
    else out.notes.push(`UNet has ${inChannels} input channels; treated as normal`);
  }
}

/**
 * Structure of a UNet without its text encoder: `label_emb` (original) / `add_embedding`
 * (diffusers) exists only in SDXL; linear `proj_in` (2-D) marks sd2, a 1x1 conv (4-D) sd1.
 */
function unetStructuralBase(keys: KeyIndex, prefix: string): ModelBase | null {
  if (keys.hasPrefix(`${prefix}label_emb.`) || keys.hasPrefix(`${prefix}add_embedding.`)) {
    const admIn = keys.shape(`${prefix}label_emb.0.0.weight`)?.[1];
    return admIn === 2560 ? 'sdxl-refiner' : 'sdxl';
  }
  const projIn = keys.firstShape((k) => k.startsWith(prefix) && k.endsWith('.proj_in.weight'));
  if (projIn === undefined) return null;
  return projIn.length === 2 ? 'sd2' : 'sd1';
}

function identifyControlNet(keys: KeyIndex, out: Identification): void {
  out.type = 'controlnet';
  const prefix = keys.hasPrefix('control_model.') ? 'control_model.' : '';
  const width = keys.firstShape((k) => k.startsWith(prefix) && k.endsWith('attn2.to_k.weight'))?.[1];
  out.base = chooseBase(
    width,
    BASE_BY_CONTEXT_WIDTH,
    unetStructuralBase(keys, prefix),
    'cross-attention width',
    out,
  );
}

function identifyLora(keys: KeyIndex, metadata: Record<string, unknown>, out: Identification): void {
  out.type = 'lora';
  out.triggerWords = extractTriggerWords(metadata);
  const isDown = (k: string): boolean => /(lora_down|lora_A|lora\.down)\.weight$/.test(k);
  const te2 = keys.some((k) => k.startsWith('lora_te2_') || k.startsWith('text_encoder_2.'));

  // Unet cross-attention key projection: its input width is the context width.
  const unetWidth = keys.firstShape((k) => isDown(k) && /attn2[._]to_k/.test(k))?.[1];
  const teWidth = keys.firstShape(
    (k) =>
      isDown(k) && /^(lora_te1?_|text_encoder\.)/.test(k) && /(q_proj|k_proj|v_proj|out_proj|fc1)/.test(k),
  )?.[1];

  const metadataBase = loraBaseFromMetadata(metadata);
  // te2 (OpenCLIP bigG) exists only in SDXL; te1 alone is sd1/sd2-shaped.
  const structural: ModelBase | null = te2 ? 'sdxl' : null;

  if (unetWidth !== undefined && BASE_BY_CONTEXT_WIDTH[unetWidth]) {
    out.base = BASE_BY_CONTEXT_WIDTH[unetWidth];
  } else if (teWidth !== undefined && BASE_BY_TEXT_ENCODER_WIDTH[teWidth] && !te2) {
    out.base = BASE_BY_TEXT_ENCODER_WIDTH[teWidth];
  } else {
    out.base = structural ?? metadataBase;
  }
  if (metadataBase && out.base && metadataBase !== out.base) {
    out.notes.push(`metadata says ${metadataBase} but tensors say ${out.base}; tensors win`);
  }
}

/** kohya `ss_base_model_version` (sd_v1, sd_v2, sdxl_base_v1-0) or SAI `modelspec.architecture`. */
export function loraBaseFromMetadata(metadata: Record<string, unknown>): ModelBase | null {
  const version = metadata['ss_base_model_version'];
  if (typeof version === 'string') {
    if (version.startsWith('sdxl')) return version.includes('refiner') ? 'sdxl-refiner' : 'sdxl';
    if (version.startsWith('sd_v1') || version === 'sd_1') return 'sd1';
    if (version.startsWith('sd_v2') || version.startsWith('sd_2')) return 'sd2';
  }
  const arch = metadata['modelspec.architecture'];
  if (typeof arch === 'string') {
    if (arch.startsWith('stable-diffusion-xl-v1-refiner')) return 'sdxl-refiner';
    if (arch.startsWith('stable-diffusion-xl')) return 'sdxl';
    if (arch.startsWith('stable-diffusion-v2')) return 'sd2';
    if (arch.startsWith('stable-diffusion-v1')) return 'sd1';
  }
  if (metadata['ss_v2'] === 'True') return 'sd2';
  return null;
}

function isVae(keys: KeyIndex): boolean {
  return (
    keys.names.length > 0 &&
    keys.hasPrefix('encoder.') &&
    keys.hasPrefix('decoder.') &&
    keys.names.every((k) => /^(encoder|decoder|quant_conv|post_quant_conv)\./.test(k))
  );
}

/**
 * Face restorers (spandrel's detection keys): GFPGAN v1.x (`conv_body_first`, `stylegan_decoder.*`),
 * CodeFormer (VQ codebook `quantize.embedding.weight` with `ft_layers.*` / `idx_pred_layer.*`) and
 * RestoreFormer (a VQ encoder/decoder whose attention blocks carry `norm1` + `norm2`: a VAE's have
 * one `norm`). All restore at the input's size (scale 1); the architecture goes in `notes`.
 */
function identifyFaceRestorer(keys: KeyIndex, out: Identification): boolean {
  let architecture: string | undefined;
  const codebook = keys.has('quantize.embedding.weight');
  if (keys.has('conv_body_first.weight') || keys.hasPrefix('stylegan_decoder.')) {
    architecture = 'GFPGAN';
  } else if (codebook && (keys.hasPrefix('ft_layers.') || keys.hasPrefix('idx_pred_layer.'))) {
    architecture = 'CodeFormer';
  } else if (
    codebook &&
    keys.hasPrefix('encoder.') &&
    keys.hasPrefix('decoder.') &&
    keys.some((k) => /^(encoder|decoder)\.(mid|up\.\d+|down\.\d+)\.attn(_\d+|\.\d+)\.norm2\./.test(k)) &&
    keys.names.every((k) => /^(encoder|decoder|quant_conv|post_quant_conv|quantize)\./.test(k))
  ) {
    architecture = 'RestoreFormer';
  }
  if (architecture === undefined) return false;
  out.type = 'face-restorer';
  out.scale = 1;
  out.notes.push(`${architecture} face restorer`);
  return true;
}

/** ESRGAN (old `model.N` and new `conv_first`/`body.N.rdbM` layouts) and Real-ESRGAN compact (SRVGG). */
function identifyUpscaler(keys: KeyIndex, out: Identification): boolean {
  const oldRrdb = keys.has('model.0.weight') && keys.hasPrefix('model.1.sub.');
  const newRrdb =
    keys.has('conv_first.weight') && keys.some((k) => /^(body\.\d+\.rdb\d\.|RRDB_trunk\.)/.test(k));
  const srvgg = keys.has('body.0.weight') && keys.names.every((k) => /^body\.\d+\.(weight|bias)$/.test(k));
  if (!oldRrdb && !newRrdb && !srvgg) return false;
  out.type = 'upscaler';
  if (newRrdb && keys.has('conv_up2.weight')) {
    // basicsr RRDBNet always upsamples x4 and pixel-unshuffles x2 / x1 models first (3 → 12 → 48 channels).
    const inChannels = keys.shape('conv_first.weight')?.[1];
    const scale = inChannels === 3 ? 4 : inChannels === 12 ? 2 : inChannels === 48 ? 1 : undefined;
    if (scale !== undefined) out.scale = scale;
  } else if (srvgg) {
    const last = Math.max(...keys.names.map((k) => Number(/^body\.(\d+)\./.exec(k)?.[1] ?? 0)));
    const outChannels = keys.shape(`body.${last}.weight`)?.[0];
    const inChannels = keys.shape('body.0.weight')?.[1];
    const scale = outChannels && inChannels ? Math.sqrt(outChannels / inChannels) : NaN;
    if (Number.isInteger(scale)) out.scale = scale;
  }
  return true;
}

/** Textual-inversion embeddings: `emb_params` / `string_to_param.*` (one encoder) or `clip_l` + `clip_g` (sdxl). */
function identifyTextEmbedding(keys: KeyIndex, out: Identification): boolean {
  const small = (k: string): boolean => {
    const s = keys.shape(k);
    return s !== undefined && s.length <= 2 && (s.length < 2 || s[0] <= 1024);
  };
  const names = keys.names;
  if (names.length === 0 || !names.every(small)) return false;
  if (keys.has('clip_l') && keys.has('clip_g') && names.length === 2) {
    out.type = 'text-embedding';
    out.base = 'sdxl';
    return true;
  }
  if (names.every((k) => k === 'emb_params' || k.startsWith('string_to_param.'))) {
    out.type = 'text-embedding';
    const width = keys.shape(names[0])?.at(-1);
    out.base = width === 768 ? 'sd1' : width === 1024 ? 'sd2' : null;
    return true;
  }
  return false;
}

/** Picks the base a real width names, else the structural guess; records disagreement. */
function chooseBase(
  width: number | undefined,
  table: Readonly<Record<number, ModelBase>>,
  structural: ModelBase | null,
  what: string,
  out: Identification,
): ModelBase | null {
  const byWidth = width === undefined ? undefined : table[width];
  if (byWidth && structural && byWidth !== structural) {
    out.notes.push(`${what} ${width} says ${byWidth}, structure says ${structural}; width wins`);
  }
  if (!byWidth && width !== undefined && structural)
    out.notes.push(`${what} ${width} is not a real base width; base from structure`);
  return byWidth ?? structural;
}

/** Sorted tensor names with prefix lookups; one per identification. */
class KeyIndex {
  readonly names: string[];
  constructor(private readonly tensors: TensorShapes) {
    this.names = Object.keys(tensors).sort();
  }
  has(name: string): boolean {
    return Object.prototype.hasOwnProperty.call(this.tensors, name);
  }
  hasPrefix(prefix: string): boolean {
    return this.names.some((k) => k.startsWith(prefix));
  }
  some(test: (name: string) => boolean): boolean {
    return this.names.some(test);
  }
  shape(name: string): readonly number[] | undefined {
    return this.has(name) ? this.tensors[name].shape : undefined;
  }
  firstShape(test: (name: string) => boolean): readonly number[] | undefined {
    const name = this.names.find(test);
    return name === undefined ? undefined : this.tensors[name].shape;
  }
}
