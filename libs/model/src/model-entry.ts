import { createHash } from 'node:crypto';
import { basename, extname } from 'node:path';
import { pickleOnlyComponents, weightlessComponents } from './folder-weights';
import type { FileHashes } from './hashing';
import { identifyDiffusersFolder } from './identify-diffusers';
import { identifyTensors } from './identify';
import type { Identification, ModelBase, ModelFormat, ModelType, ModelVariant } from './model-kind';
import { readSafetensorsHeader, safetensorsInvalidReason } from './safetensors-header';
import type { ModelCandidate } from './scan-roots';

/** ok: usable; invalid: broken file (see reason); refused: pickle without the unsafe flag; hashing: usable, hashes pending. */
export type ModelStatus = 'ok' | 'invalid' | 'refused' | 'hashing';

export interface ModelEntry {
  /** Stable across restarts and rescans: first 16 hex of sha256(root + NUL + relPath). */
  id: string;
  path: string;
  relPath: string;
  root: string;
  type: ModelType;
  base: ModelBase | null;
  variant: ModelVariant;
  format: ModelFormat;
  sizeBytes: number;
  mtimeMs: number;
  /** safetensors `__metadata__` with nested JSON parsed; {} for other formats. */
  metadata: Record<string, unknown>;
  triggerWords: string[];
  /** Filled by background hashing; absent for diffusers folders and invalid files. */
  hashes?: FileHashes;
  hashedAt?: string;
  status: ModelStatus;
  /** Why status is invalid/refused, or why type/base is unknown. */
  reason?: string;
  notes: string[];
  /** Upscale factor of an upscaler where its layout tells. */
  scale?: number;
  /** safetensors: file offset of the tensor data (8 + header length). */
  dataOffset?: number;
  /** Loading it unpickles (a pickle file, or a diffusers folder with pickle-only components): listed by allowUnsafePickle. */
  pickle?: boolean;
}

/** The stable id of a model at `relPath` under `root`. */
export function modelId(root: string, relPath: string): string {
  return createHash('sha256').update(`${root}\0${relPath}`).digest('hex').slice(0, 16);
}

/**
 * Builds the registry entry of a scanned candidate by reading only what identification needs
 * (a safetensors header, a diffusers folder's JSON configs). Never throws for a broken file:
 * it becomes status 'invalid' with the reason; throws only file-system errors other than a
 * malformed file (the caller retries on the next scan).
 */
export async function buildEntry(candidate: ModelCandidate, allowUnsafePickle: boolean): Promise<ModelEntry> {
  const base = {
    id: modelId(candidate.root, candidate.relPath),
    path: candidate.path,
    relPath: candidate.relPath,
    root: candidate.root,
    sizeBytes: candidate.sizeBytes,
    mtimeMs: candidate.mtimeMs,
  };
  if (candidate.kind === 'diffusers-folder') return folderEntry(base, candidate, allowUnsafePickle);
  if (candidate.kind === 'pickle') {
    if (!allowUnsafePickle) {
      const reason =
        'pickle file refused: loading it can run arbitrary code; convert it to .safetensors or enable allowUnsafePickle';
      return { ...fromIdentification(base, { ...unknown('ckpt'), reason }, {}, 'refused'), pickle: true };
    }
    const reason = 'pickle files are not inspected; identification needs .safetensors';
    return { ...fromIdentification(base, { ...unknown('ckpt'), reason }, {}, 'hashing'), pickle: true };
  }
  try {
    const header = await readSafetensorsHeader(candidate.path);
    const identification = identifyTensors(header.tensors, header.metadata, 'safetensors');
    if (identification.type === 'text-embedding' && identification.triggerWords.length === 0) {
      // A textual-inversion embedding is invoked by its file name.
      identification.triggerWords = [basename(candidate.path, extname(candidate.path))];
    }
    const entry = fromIdentification(base, identification, header.metadata, 'hashing');
    entry.dataOffset = header.dataOffset;
    return entry;
  } catch (err) {
    if (safetensorsInvalidReason(err) === undefined) throw err;
    return fromIdentification(
      base,
      { ...unknown('safetensors'), reason: (err as Error).message },
      {},
      'invalid',
    );
  }
}

/**
 * A diffusers folder's entry: invalid when a symlink inside it leaves the roots (nothing is read
 * through it) or a model component has configs but no weight file, refused when a component's
 * weights are pickle only (unless the node allows pickle).
 */
async function folderEntry(
  base: EntryBase,
  candidate: ModelCandidate,
  allowUnsafePickle: boolean,
): Promise<ModelEntry> {
  const linksOutside = candidate.linksOutside ?? [];
  if (linksOutside.length > 0) {
    const reason = `symlinks out of the model roots: ${linksOutside.slice(0, 5).join(', ')}`;
    return fromIdentification(base, { ...unknown('diffusers-folder'), reason }, {}, 'invalid');
  }
  const identification = await identifyDiffusersFolder(candidate.path);
  const weightless = weightlessComponents(candidate.files ?? []);
  if (weightless.length > 0) {
    const reason = `${weightless.slice(0, 5).join(', ')}: no weights (config.json without a .safetensors file)`;
    return fromIdentification(base, { ...identification, reason }, {}, 'invalid');
  }
  const pickle = pickleOnlyComponents(candidate.files ?? []);
  if (pickle.length === 0) return fromIdentification(base, identification, {}, 'ok');
  const where = pickle.join(', ');
  if (!allowUnsafePickle) {
    const reason = `pickle weights (.bin) only; convert to safetensors (${where})`;
    return { ...fromIdentification(base, { ...identification, reason }, {}, 'refused'), pickle: true };
  }
  identification.notes.push(`loads pickle weights (.bin) in ${where}`);
  return { ...fromIdentification(base, identification, {}, 'ok'), pickle: true };
}

type EntryBase = Pick<ModelEntry, 'id' | 'path' | 'relPath' | 'root' | 'sizeBytes' | 'mtimeMs'>;

function unknown(format: ModelFormat): Identification {
  return { type: 'unknown', base: null, variant: 'normal', format, notes: [], triggerWords: [] };
}

function fromIdentification(
  base: EntryBase,
  identification: Identification,
  metadata: Record<string, unknown>,
  status: ModelStatus,
): ModelEntry {
  const entry: ModelEntry = {
    ...base,
    type: identification.type,
    base: identification.base,
    variant: identification.variant,
    format: identification.format,
    metadata,
    triggerWords: identification.triggerWords,
    status,
    notes: identification.notes,
  };
  if (identification.reason !== undefined) entry.reason = identification.reason;
  if (identification.scale !== undefined) entry.scale = identification.scale;
  return entry;
}

/** Whether background hashing applies: single files that are not broken. */
export function isHashable(entry: ModelEntry): boolean {
  return entry.format !== 'diffusers-folder' && entry.status !== 'invalid';
}
