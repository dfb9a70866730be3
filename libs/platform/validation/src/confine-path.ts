import { lstatSync, readlinkSync, realpathSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { DopsError } from '@dops/errors';

/** A path that passed {@link checkConfined}. */
export interface ConfinedPath {
  /** The configured root (made absolute) the path was named under. */
  root: string;
  /** The path as named, made absolute; symlinks not followed. */
  path: string;
  /**
   * `path` with every symlink resolved (a path that does not exist yet: its nearest existing
   * ancestor resolved, plus the rest). Inside the real path of a root; what to hand to whoever opens it.
   */
  realPath: string;
}

export type Confinement = { ok: true; confined: ConfinedPath } | { ok: false; description: string };

const MAX_CHARS = 4096;
// Linux's MAXSYMLINKS: a chain longer than this is a loop for every practical purpose.
const MAX_LINK_HOPS = 40;

/** True when `child` equals `parent` or lies below it (both absolute and normalised). Lexical. */
export function isInside(parent: string, child: string): boolean {
  const rel = relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

/**
 * The one confinement check for every path that arrives in a request or a config: the raw form
 * first (empty, NUL, `..` segments, foreign separators), then symlinks resolved, then the result
 * under the real path of one of `roots` (`what` names them in the answer). A relative path is
 * tried against each root in order and taken from the first that holds it (the first root when
 * none does). A path outside the roots gets the same answer whether or not it exists, and the
 * file system is not touched for a path that is lexically outside them. Never throws.
 */
export function checkConfined(raw: string, roots: readonly string[], what: string): Confinement {
  const problem = formProblem(raw);
  if (problem) return { ok: false, description: problem };
  if (roots.length === 0) return { ok: false, description: `${what} is not configured on this service` };
  const outside: Confinement = { ok: false, description: `must be inside ${what}` };
  try {
    const pairs = roots.map((root) => {
      const lexical = resolve(root);
      return { lexical, real: realPathOf(lexical) };
    });
    let path: string;
    if (isAbsolute(raw)) {
      path = resolve(raw);
      // A root may be configured through a symlink and named by its real path, or the other way round.
      if (!pairs.some((r) => isInside(r.lexical, path) || isInside(r.real, path))) return outside;
    } else {
      const candidates = pairs.map((r) => resolve(r.lexical, raw));
      path = candidates.find(exists) ?? resolve(pairs[0]?.lexical ?? '', raw);
    }
    const realPath = realPathOf(path);
    const home = pairs.find((r) => isInside(r.real, realPath));
    if (!home)
      return { ok: false, description: `must be inside ${what} (its real path, symlinks resolved, is not)` };
    const root = pairs.find((r) => isInside(r.lexical, path))?.lexical ?? home.lexical;
    return { ok: true, confined: { root, path, realPath } };
  } catch (err) {
    if (err instanceof TooManyLinks)
      return { ok: false, description: 'has too many levels of symbolic links' };
    throw err;
  }
}

/**
 * {@link checkConfined} that throws: INVALID_ARGUMENT naming `field` (google.rpc.BadRequest) when
 * the path is malformed, no root is configured, or it lies outside the roots.
 */
export function confinePath(
  raw: string,
  roots: readonly string[],
  field: string,
  what: string,
): ConfinedPath {
  const result = checkConfined(raw, roots, what);
  if (!result.ok) throw DopsError.invalidArgument(field, result.description);
  return result.confined;
}

/** Why the raw value is not a normal path, before any file-system access; undefined when it is one. */
function formProblem(raw: string): string | undefined {
  if (!raw) return 'is required';
  if (raw.length > MAX_CHARS) return `must be at most ${MAX_CHARS} characters`;
  if (raw.includes('\0')) return 'must not contain NUL bytes';
  // Both separators: a Windows client may send `..\x` to a Linux node and the reverse.
  if (raw.split(/[\\/]+/).includes('..')) return "must not contain '..' segments";
  if (process.platform === 'win32') {
    // UNC and device-namespace paths (\\server\share, \\?\, \\.\) and alternate data streams (x:stream).
    if (/^[\\/]{2}/.test(raw)) return 'must not be a UNC or device path';
    if (raw.replace(/^[A-Za-z]:/, '').includes(':'))
      return "must not contain ':' except after a drive letter";
  } else if (raw.includes('\\')) {
    // A legal file-name character here, but in a request it means a Windows path sent to a posix node.
    return "must use '/' as the separator";
  }
  return undefined;
}

class TooManyLinks extends Error {}

function exists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * realpath(3) that also answers for a path that does not (fully) exist: a dangling symlink is
 * followed to where it points, a missing tail is kept after its nearest existing ancestor's real
 * path. So `root/link/new-file` with `link → /elsewhere` is `/elsewhere/new-file`, created or not.
 * Throws TooManyLinks for a symlink loop.
 */
function realPathOf(path: string, hops = 0): string {
  if (hops > MAX_LINK_HOPS) throw new TooManyLinks();
  try {
    return realpathSync(path);
  } catch {
    // Missing, dangling, a loop, or not searchable: resolved by hand below.
  }
  let target: string | undefined;
  try {
    if (lstatSync(path).isSymbolicLink()) target = readlinkSync(path);
  } catch {
    // The path itself is missing (or its parent is): its parent decides.
  }
  if (target !== undefined) return realPathOf(resolve(dirname(path), target), hops + 1);
  const parent = dirname(path);
  if (parent === path) return path;
  const joined = join(realPathOf(parent, hops), basename(path));
  // The parent went through a link: the same name under its target may be a link of its own.
  return joined === path ? path : realPathOf(joined, hops + 1);
}
