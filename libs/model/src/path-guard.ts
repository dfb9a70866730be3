import { realpath, stat } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { DopsError } from '@dops/errors';

export interface ConfinedPath {
  /** The root (as configured, resolved to absolute) the path lies under. */
  root: string;
  /** Absolute path as named (symlinks not followed). */
  path: string;
  /** Root-relative path with `/` separators. */
  relPath: string;
  /** The path with every symlink resolved; inside some root's realpath. */
  realPath: string;
}

/** True when `child` equals `parent` or lies below it (both absolute, normalised). */
export function isInside(parent: string, child: string): boolean {
  const rel = relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

/** Root-relative path with `/` separators on every platform. */
export function toRelPath(root: string, path: string): string {
  return relative(root, path).split(sep).join('/');
}

/**
 * Confines client-supplied paths to configured model roots. A relative path is tried against
 * each root in order; an absolute one must lie under a root. Symlinks are allowed only while
 * their target stays inside some root.
 */
export class PathGuard {
  readonly roots: readonly string[];
  private realRoots: string[] | undefined;

  /** `roots` are resolved against the process cwd; none at all throws INVALID_ARGUMENT 'roots'. */
  constructor(roots: readonly string[]) {
    if (roots.length === 0) throw DopsError.invalidArgument('roots', 'at least one model root is required');
    this.roots = roots.map((r) => resolve(r));
  }

  /**
   * Resolves `input` (from the request field `field`) to a path inside the roots.
   * Throws INVALID_ARGUMENT naming `field` for an empty path, a NUL byte, a `..` segment, an
   * absolute path outside every root or a symlink whose target escapes them; NOT_FOUND when no
   * root holds it.
   */
  async confine(input: string, field = 'path'): Promise<ConfinedPath> {
    if (input.length === 0) throw DopsError.invalidArgument(field, 'must not be empty');
    if (input.includes('\0')) throw DopsError.invalidArgument(field, 'must not contain NUL bytes');
    // Both separators: a Windows client may send `..\x` to a Linux node and the reverse.
    if (input.split(/[\\/]+/).includes('..'))
      throw DopsError.invalidArgument(field, "must not contain '..' segments");

    const candidates: Array<{ root: string; path: string }> = [];
    if (isAbsolute(input)) {
      const path = resolve(input);
      const root = this.roots.find((r) => isInside(r, path));
      if (!root) throw DopsError.invalidArgument(field, 'absolute path is outside the model roots');
      candidates.push({ root, path });
    } else {
      for (const root of this.roots) candidates.push({ root, path: resolve(join(root, input)) });
    }

    for (const { root, path } of candidates) {
      let realPath: string;
      try {
        realPath = await realpath(path);
      } catch (err) {
        if (isMissing(err)) continue;
        throw err;
      }
      if (!(await this.insideRealRoots(realPath))) {
        throw DopsError.invalidArgument(
          field,
          'resolves through a symlink to a location outside the model roots',
        );
      }
      return { root, path, relPath: toRelPath(root, path), realPath };
    }
    throw DopsError.notFound('model path', input);
  }

  /** True when a resolved path lies under the realpath of some root. Never throws. */
  async insideRealRoots(realPath: string): Promise<boolean> {
    const roots = await this.resolveRealRoots();
    return roots.some((r) => isInside(r, realPath));
  }

  private async resolveRealRoots(): Promise<string[]> {
    if (!this.realRoots) {
      // A root that does not exist yet keeps its lexical path, so it starts working once created.
      this.realRoots = await Promise.all(this.roots.map((r) => realpath(r).catch(() => r)));
      if (
        !(
          await Promise.all(
            this.roots.map((r) =>
              stat(r).then(
                () => true,
                () => false,
              ),
            ),
          )
        ).every(Boolean)
      ) {
        const resolved = this.realRoots;
        this.realRoots = undefined;
        return resolved;
      }
    }
    return this.realRoots;
  }
}

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}
