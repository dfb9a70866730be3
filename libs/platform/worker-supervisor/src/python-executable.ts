import { existsSync } from 'node:fs';
import path from 'node:path';

export interface ResolvePythonOptions {
  /** Environment to read DOPS_PYTHON from. Default: this process's. */
  env?: NodeJS.ProcessEnv;
  /** Repository root holding `.venv`. Default: the nearest directory with `nx.json` above the cwd, then above this file. */
  repoRoot?: string;
  /** Default: this process's platform. */
  platform?: NodeJS.Platform;
  /** Default: fs.existsSync. */
  exists?: (file: string) => boolean;
}

/** The nearest directory at or above `start` that holds `nx.json`; undefined when none does. */
export function findRepoRoot(
  start: string,
  exists: (file: string) => boolean = existsSync,
): string | undefined {
  let dir = path.resolve(start);
  for (;;) {
    if (exists(path.join(dir, 'nx.json'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

/**
 * The Python that runs workers: `DOPS_PYTHON` when set, else `<repo>/.venv/bin/python`
 * (`.venv\Scripts\python.exe` on Windows) when it exists, else `python3` (`python` on Windows,
 * where `python3` is often the Store shim). Never throws; the path is not checked to run.
 */
export function resolvePythonExecutable(options: ResolvePythonOptions = {}): string {
  const env = options.env ?? process.env;
  const platform = options.platform ?? process.platform;
  const exists = options.exists ?? existsSync;
  const fromEnv = env['DOPS_PYTHON'];
  if (fromEnv && fromEnv.trim() !== '') return fromEnv;
  const root = options.repoRoot ?? findRepoRoot(process.cwd(), exists) ?? findRepoRoot(__dirname, exists);
  if (root) {
    const venvPython =
      platform === 'win32'
        ? path.join(root, '.venv', 'Scripts', 'python.exe')
        : path.join(root, '.venv', 'bin', 'python');
    if (exists(venvPython)) return venvPython;
  }
  return platform === 'win32' ? 'python' : 'python3';
}
