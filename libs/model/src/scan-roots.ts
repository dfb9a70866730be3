import type { Dirent, Stats } from 'node:fs';
import { readdir, realpath, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { DIFFUSERS_INDEX, isSafetyCheckerFolder } from './identify-diffusers';
import { type PathGuard, toRelPath } from './path-guard';

/** Extensions of single-file models; `.ckpt/.pt/.pth/.bin` are pickle. */
export const SAFETENSORS_EXTENSIONS: ReadonlySet<string> = new Set(['.safetensors']);
export const PICKLE_EXTENSIONS: ReadonlySet<string> = new Set(['.ckpt', '.pt', '.pth', '.bin']);

export interface ModelCandidate {
  kind: 'safetensors' | 'pickle' | 'diffusers-folder';
  root: string;
  /** Absolute path as found under the root (symlinks not followed). */
  path: string;
  relPath: string;
  /** A folder's size is the sum of its files; its mtime the newest of them. */
  sizeBytes: number;
  mtimeMs: number;
}

export interface ScanResult {
  candidates: ModelCandidate[];
  /** Roots or entries that could not be read (missing root, permission); the scan goes on. */
  problems: string[];
}

/**
 * Walks every root for model files and diffusers folders (a directory holding model_index.json,
 * or a saved safety checker's config.json + weights; not descended into). Skips dot-files, symlinks whose target leaves the roots, and directory
 * loops. Never throws for file-system problems: they are listed in `problems`.
 */
export async function scanRoots(guard: PathGuard): Promise<ScanResult> {
  const result: ScanResult = { candidates: [], problems: [] };
  const seenDirs = new Set<string>();
  const seenPaths = new Set<string>();
  for (const root of guard.roots) {
    await walk(guard, root, root, seenDirs, seenPaths, result);
  }
  return result;
}

async function walk(
  guard: PathGuard,
  root: string,
  dir: string,
  seenDirs: Set<string>,
  seenPaths: Set<string>,
  result: ScanResult,
): Promise<void> {
  let realDir: string;
  let entries: Dirent[];
  try {
    realDir = await realpath(dir);
    if (seenDirs.has(realDir)) return; // a symlink loop, or a root nested in another root
    seenDirs.add(realDir);
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    result.problems.push(`${dir}: ${(err as Error).message}`);
    return;
  }
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const entry of entries) {
    if (entry.name.startsWith('.')) continue;
    const path = join(dir, entry.name);
    const info = await describeEntry(guard, path, entry, result);
    if (!info) continue;
    if (info.isDirectory()) {
      const folder = await diffusersFolder(path);
      if (folder) {
        if (!seenPaths.has(path)) {
          seenPaths.add(path);
          result.candidates.push({
            kind: 'diffusers-folder',
            root,
            path,
            relPath: toRelPath(root, path),
            ...folder,
          });
        }
      } else {
        await walk(guard, root, path, seenDirs, seenPaths, result);
      }
      continue;
    }
    if (!info.isFile()) continue;
    const ext = extname(entry.name).toLowerCase();
    const kind = SAFETENSORS_EXTENSIONS.has(ext)
      ? 'safetensors'
      : PICKLE_EXTENSIONS.has(ext)
        ? 'pickle'
        : undefined;
    if (!kind || seenPaths.has(path)) continue;
    seenPaths.add(path);
    result.candidates.push({
      kind,
      root,
      path,
      relPath: toRelPath(root, path),
      sizeBytes: info.size,
      mtimeMs: info.mtimeMs,
    });
  }
}

/** Stats of a directory entry, following a symlink only while its target stays inside the roots. */
async function describeEntry(
  guard: PathGuard,
  path: string,
  entry: Dirent,
  result: ScanResult,
): Promise<Stats | undefined> {
  try {
    if (entry.isSymbolicLink()) {
      const target = await realpath(path);
      if (!(await guard.insideRealRoots(target))) return undefined;
    }
    return await stat(path);
  } catch (err) {
    // Vanished between readdir and stat, or a dangling symlink: not a model.
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
      result.problems.push(`${path}: ${(err as Error).message}`);
    return undefined;
  }
}

/** Size and newest mtime of a diffusers folder (or safety checker), or undefined when the directory is not one. */
async function diffusersFolder(dir: string): Promise<{ sizeBytes: number; mtimeMs: number } | undefined> {
  try {
    await stat(join(dir, DIFFUSERS_INDEX));
  } catch {
    if (!(await isSafetyCheckerFolder(dir))) return undefined;
  }
  const totals = { sizeBytes: 0, mtimeMs: 0 };
  const visit = async (d: string): Promise<void> => {
    for (const entry of await readdir(d, { withFileTypes: true }).catch(() => [] as Dirent[])) {
      const path = join(d, entry.name);
      if (entry.isDirectory()) await visit(path);
      else if (entry.isFile()) {
        const s = await stat(path).catch(() => undefined);
        if (!s) continue;
        totals.sizeBytes += s.size;
        totals.mtimeMs = Math.max(totals.mtimeMs, s.mtimeMs);
      }
    }
  };
  await visit(dir);
  return totals;
}
