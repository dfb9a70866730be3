import type { Dirent, Stats } from 'node:fs';
import { lstat, readdir, realpath, stat } from 'node:fs/promises';
import { extname, join, relative, sep } from 'node:path';
import { checkConfined } from '@dops/validation';
import { DIFFUSERS_INDEX, isSafetyCheckerFolder } from './identify-diffusers';

/** Extensions of single-file models; `.ckpt/.pt/.pth/.bin` are pickle. */
export const SAFETENSORS_EXTENSIONS: ReadonlySet<string> = new Set(['.safetensors']);
export const PICKLE_EXTENSIONS: ReadonlySet<string> = new Set(['.ckpt', '.pt', '.pth', '.bin']);

export interface ModelCandidate {
  kind: 'safetensors' | 'pickle' | 'diffusers-folder';
  root: string;
  /** Absolute path as found under the root (symlinks not followed). */
  path: string;
  relPath: string;
  /**
   * A folder's size is the sum of its files; its mtime the newest of its files, folders and
   * symlinks, so adding or removing an entry anywhere inside it counts as a change.
   */
  sizeBytes: number;
  mtimeMs: number;
  /** A diffusers folder's files, folder-relative with `/` separators (symlinks inside the roots followed). */
  files?: string[];
  /** A diffusers folder's symlinks that resolve outside the roots (folder-relative): it must not load. */
  linksOutside?: string[];
}

export interface ScanResult {
  candidates: ModelCandidate[];
  /** Roots or entries that could not be read (missing root, permission); the scan goes on. */
  problems: string[];
}

/** Root-relative path with `/` separators on every platform. */
export function toRelPath(root: string, path: string): string {
  return relative(root, path).split(sep).join('/');
}

/**
 * Walks every root (absolute) for model files and diffusers folders (a directory holding
 * model_index.json, or a saved safety checker's config.json + weights; not descended into as
 * models, but listed file by file). Skips dot-files, symlinks whose target leaves the roots
 * (checkConfined, the one confinement check), and directory loops. Never throws for file-system
 * problems: they are listed in `problems`.
 */
export async function scanRoots(roots: readonly string[]): Promise<ScanResult> {
  const result: ScanResult = { candidates: [], problems: [] };
  const seenDirs = new Set<string>();
  const seenPaths = new Set<string>();
  for (const root of roots) {
    await walk(roots, root, root, seenDirs, seenPaths, result);
  }
  return result;
}

async function walk(
  roots: readonly string[],
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
    const info = await describeEntry(roots, path, entry, result);
    if (!info) continue;
    if (info.isDirectory()) {
      const folder = await diffusersFolder(roots, path);
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
        await walk(roots, root, path, seenDirs, seenPaths, result);
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
  roots: readonly string[],
  path: string,
  entry: Dirent,
  result: ScanResult,
): Promise<Stats | undefined> {
  try {
    if (entry.isSymbolicLink() && !checkConfined(path, roots, 'a model root').ok) return undefined;
    return await stat(path);
  } catch (err) {
    // Vanished between readdir and stat, or a dangling symlink: not a model.
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
      result.problems.push(`${path}: ${(err as Error).message}`);
    return undefined;
  }
}

type FolderFacts = Required<Pick<ModelCandidate, 'sizeBytes' | 'mtimeMs' | 'files' | 'linksOutside'>>;

/**
 * Size, newest mtime and files of a diffusers folder (or safety checker), or undefined when the
 * directory is not one. A symlink inside it is followed only while it stays inside the roots;
 * one that leaves them is listed in `linksOutside` (the folder must not load through it).
 */
async function diffusersFolder(roots: readonly string[], dir: string): Promise<FolderFacts | undefined> {
  try {
    await stat(join(dir, DIFFUSERS_INDEX));
  } catch {
    if (!(await isSafetyCheckerFolder(dir))) return undefined;
  }
  const facts: FolderFacts = { sizeBytes: 0, mtimeMs: 0, files: [], linksOutside: [] };
  const seen = new Set<string>();
  const visit = async (d: string): Promise<void> => {
    const real = await realpath(d).catch(() => d);
    if (seen.has(real)) return; // a link back to a folder already listed
    seen.add(real);
    const own = await stat(d).catch(() => undefined);
    facts.mtimeMs = Math.max(facts.mtimeMs, own?.mtimeMs ?? 0);
    const entries = await readdir(d, { withFileTypes: true }).catch(() => [] as Dirent[]);
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      const path = join(d, entry.name);
      if (entry.isSymbolicLink()) {
        const link = await lstat(path).catch(() => undefined);
        facts.mtimeMs = Math.max(facts.mtimeMs, link?.mtimeMs ?? 0);
        if (!checkConfined(path, roots, 'a model root').ok) {
          facts.linksOutside.push(toRelPath(dir, path));
          continue;
        }
      }
      const s = await stat(path).catch(() => undefined);
      if (s?.isDirectory()) await visit(path);
      else if (s?.isFile()) {
        facts.files.push(toRelPath(dir, path));
        facts.sizeBytes += s.size;
        facts.mtimeMs = Math.max(facts.mtimeMs, s.mtimeMs);
      }
    }
  };
  await visit(dir);
  return facts;
}
