import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Identification, ModelBase } from './model-kind';

/** The file that makes a directory a diffusers pipeline folder. */
export const DIFFUSERS_INDEX = 'model_index.json';

/** The diffusers/transformers class of an SD safety checker, as its config.json names it. */
export const SAFETY_CHECKER_CLASS = 'StableDiffusionSafetyChecker';

/**
 * Whether a directory (without model_index.json) is a saved safety checker: config.json naming
 * {@link SAFETY_CHECKER_CLASS} (`_class_name` or `architectures`) beside `.safetensors` weights.
 * A folder with pickle weights only is not one (it is walked, and its `.bin` refused as pickle).
 */
export async function isSafetyCheckerFolder(dir: string): Promise<boolean> {
  const config = await readJsonObject(join(dir, 'config.json'));
  if (typeof config === 'string' || !namesSafetyChecker(config)) return false;
  const names = await readdir(dir).catch(() => [] as string[]);
  return names.some((n) => n.toLowerCase().endsWith('.safetensors'));
}

function namesSafetyChecker(config: Record<string, unknown>): boolean {
  const architectures = config['architectures'];
  return (
    config['_class_name'] === SAFETY_CHECKER_CLASS ||
    (Array.isArray(architectures) && architectures.includes(SAFETY_CHECKER_CLASS))
  );
}

const BASE_BY_CROSS_ATTENTION: Readonly<Record<number, ModelBase>> = {
  768: 'sd1',
  1024: 'sd2',
  2048: 'sdxl',
  1280: 'sdxl-refiner',
};

/**
 * Identifies a diffusers folder from `model_index.json` (`_class_name`, components) and
 * `unet/config.json` (`in_channels`, `cross_attention_dim`, `addition_embed_type`,
 * `use_linear_projection`), or a saved safety checker (no model_index.json; see
 * {@link isSafetyCheckerFolder}). Never throws: an unreadable or foreign folder → type 'unknown' with
 * `reason`.
 */
export async function identifyDiffusersFolder(dir: string): Promise<Identification> {
  const out: Identification = {
    type: 'unknown',
    base: null,
    variant: 'normal',
    format: 'diffusers-folder',
    notes: [],
    triggerWords: [],
  };
  const index = await readJsonObject(join(dir, DIFFUSERS_INDEX));
  if (index === 'missing' && (await isSafetyCheckerFolder(dir))) {
    // A safety checker is no SD family's own: it checks any pipeline's images.
    return { ...out, type: 'safety-checker', notes: [`${SAFETY_CHECKER_CLASS} (CLIP vision)`] };
  }
  if (typeof index === 'string') return { ...out, reason: `${DIFFUSERS_INDEX}: ${index}` };
  const className = typeof index['_class_name'] === 'string' ? index['_class_name'] : '';
  if (!/^StableDiffusion/.test(className)) {
    // Named only when it is a class name, so a file posing as model_index.json is not echoed.
    const named = /^[A-Za-z_][A-Za-z0-9_]{0,79}$/.test(className) ? `'${className}'` : '(no class name)';
    return { ...out, reason: `pipeline ${named} is not an SD1/SD2/SDXL pipeline` };
  }
  const unet = await readJsonObject(join(dir, 'unet', 'config.json'));
  if (typeof unet === 'string') return { ...out, reason: `unet/config.json: ${unet}` };

  out.type = 'checkpoint';
  const inChannels = unet['in_channels'];
  if (inChannels === 9 || /Inpaint/.test(className)) out.variant = 'inpaint';
  else if (inChannels === 5 || /Depth2Img/.test(className)) out.variant = 'depth';
  else if (inChannels !== 4)
    out.notes.push(`UNet has ${String(inChannels)} input channels; treated as normal`);

  const width = typeof unet['cross_attention_dim'] === 'number' ? unet['cross_attention_dim'] : undefined;
  const byWidth = width === undefined ? undefined : BASE_BY_CROSS_ATTENTION[width];
  out.base = byWidth ?? structuralBase(index, unet, className);
  if (!byWidth && width !== undefined)
    out.notes.push(`cross_attention_dim ${String(width)} is not a real base width; base from structure`);
  return out;
}

/** SDXL has `addition_embed_type: text_time`; its refiner ships no first text encoder; sd2 uses linear projections. */
function structuralBase(
  index: Record<string, unknown>,
  unet: Record<string, unknown>,
  className: string,
): ModelBase {
  if (unet['addition_embed_type'] === 'text_time' || /^StableDiffusionXL/.test(className)) {
    const refiner = index['requires_aesthetics_score'] === true || !hasComponent(index, 'text_encoder');
    return refiner ? 'sdxl-refiner' : 'sdxl';
  }
  return unet['use_linear_projection'] === true ? 'sd2' : 'sd1';
}

/** model_index.json lists a component as [library, class]; a missing one is absent or [null, null]. */
function hasComponent(index: Record<string, unknown>, name: string): boolean {
  const entry = index[name];
  return Array.isArray(entry) && entry.length === 2 && entry[1] !== null;
}

/** The parsed object, or a one-line reason it could not be read. */
async function readJsonObject(path: string): Promise<Record<string, unknown> | string> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : (err as Error).message;
  }
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value === 'object' && value !== null && !Array.isArray(value))
      return value as Record<string, unknown>;
    return 'not a JSON object';
  } catch {
    // JSON.parse's message quotes the text around the fault: never echo a file's contents.
    return 'not valid JSON';
  }
}
