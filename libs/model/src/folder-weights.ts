import { extname, posix } from 'node:path';
import { PICKLE_EXTENSIONS, SAFETENSORS_EXTENSIONS } from './scan-roots';

/**
 * The components of a diffusers folder (its subfolders, folder-relative; `.` for the folder
 * itself) whose weights are pickle only: a `.bin`/`.ckpt`/`.pt`/`.pth` with no `.safetensors`
 * beside it. Loading such a component unpickles, which can run code; with a `.safetensors`
 * beside it the loader takes that one. `files` are folder-relative with `/` separators.
 */
export function pickleOnlyComponents(files: readonly string[]): string[] {
  return [...weightsByComponent(files)]
    .filter(([, w]) => w.pickle && !w.safetensors)
    .map(([component]) => component)
    .sort();
}

/**
 * The model components of a diffusers folder (immediate subfolders holding a `config.json`, as
 * diffusers and transformers save a model: unet, vae, text_encoder, safety_checker, ...) that hold
 * no weight file at all, neither `.safetensors` nor pickle. Such a folder cannot load; schedulers,
 * tokenizers and feature extractors have no `config.json` and no weights, and are not counted.
 * `files` are folder-relative with `/` separators.
 */
export function weightlessComponents(files: readonly string[]): string[] {
  const weights = weightsByComponent(files);
  return files
    .filter((file) => posix.basename(file) === 'config.json')
    .map((file) => posix.dirname(file))
    .filter((component) => component !== '.' && !component.includes('/') && !weights.has(component))
    .sort();
}

interface ComponentWeights {
  pickle: boolean;
  safetensors: boolean;
}

/** Which weight formats each folder holding any weight file holds, by folder-relative folder. */
function weightsByComponent(files: readonly string[]): Map<string, ComponentWeights> {
  const byComponent = new Map<string, ComponentWeights>();
  for (const file of files) {
    const ext = extname(file).toLowerCase();
    if (!PICKLE_EXTENSIONS.has(ext) && !SAFETENSORS_EXTENSIONS.has(ext)) continue;
    const component = posix.dirname(file);
    const weights = byComponent.get(component) ?? { pickle: false, safetensors: false };
    if (PICKLE_EXTENSIONS.has(ext)) weights.pickle = true;
    else weights.safetensors = true;
    byComponent.set(component, weights);
  }
  return byComponent;
}
