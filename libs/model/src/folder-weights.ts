import { extname, posix } from 'node:path';
import { PICKLE_EXTENSIONS, SAFETENSORS_EXTENSIONS } from './scan-roots';

/**
 * The components of a diffusers folder (its subfolders, folder-relative; `.` for the folder
 * itself) whose weights are pickle only: a `.bin`/`.ckpt`/`.pt`/`.pth` with no `.safetensors`
 * beside it. Loading such a component unpickles, which can run code; with a `.safetensors`
 * beside it the loader takes that one. `files` are folder-relative with `/` separators.
 */
export function pickleOnlyComponents(files: readonly string[]): string[] {
  const byComponent = new Map<string, { pickle: boolean; safetensors: boolean }>();
  for (const file of files) {
    const ext = extname(file).toLowerCase();
    if (!PICKLE_EXTENSIONS.has(ext) && !SAFETENSORS_EXTENSIONS.has(ext)) continue;
    const component = posix.dirname(file);
    const weights = byComponent.get(component) ?? { pickle: false, safetensors: false };
    if (PICKLE_EXTENSIONS.has(ext)) weights.pickle = true;
    else weights.safetensors = true;
    byComponent.set(component, weights);
  }
  return [...byComponent]
    .filter(([, w]) => w.pickle && !w.safetensors)
    .map(([component]) => component)
    .sort();
}
