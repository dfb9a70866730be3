import { isAbsolute } from 'node:path';
import { DopsError } from '@dops/errors';
import { confinePath } from '@dops/validation';

/** Where a host may read models and configs from. */
export interface HostRoots {
  /** The host's model roots; a load's path must be inside one once symlinks are resolved. */
  modelRoots: readonly string[];
  /**
   * Config root for single-file checkpoints when a request names none (from the host's config,
   * trusted); a request's config_dir may also lie under it. Default: the worker's shipped configs.
   */
  configDir?: string;
}

/**
 * The real paths a LoadModel request may hand to the worker: `path` absolute and inside a model
 * root, `config_dir` (optional; default the host's) inside a model root or the host's config dir.
 * Throws INVALID_ARGUMENT naming `path` or `config_dir`; an outside path gets the same answer
 * whether or not it exists, and the worker is never asked about it.
 */
export function loadPaths(
  path: string,
  configDir: string,
  roots: HostRoots,
): { path: string; configDir?: string } {
  // The model service sends absolute paths; a relative one means a confused caller.
  if (path && !isAbsolute(path)) throw DopsError.invalidArgument('path', 'must be absolute');
  const modelPath = confinePath(path, roots.modelRoots, 'path', 'a model root of this host').realPath;
  if (!configDir) return { path: modelPath, configDir: roots.configDir };
  const configRoots = roots.configDir ? [...roots.modelRoots, roots.configDir] : roots.modelRoots;
  const where = roots.configDir ? 'a model root or the config dir of this host' : 'a model root of this host';
  return { path: modelPath, configDir: confinePath(configDir, configRoots, 'config_dir', where).realPath };
}
