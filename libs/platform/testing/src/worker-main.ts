import { delimiter, join, resolve } from 'node:path';
import { resolvePythonExecutable } from '@dops/worker-supervisor';

/**
 * `python -c` source of an inference worker for tests and benchmarks that start one directly:
 * stdout guarded first, the model and inference methods registered, then the worker's loop.
 */
export const INFERENCE_WORKER_MAIN = [
  'from dops_worker.runtime.stdio import guard_stdout',
  'frames_in, frames_out = guard_stdout()',
  'import dops_worker.models.methods',
  'import dops_worker.inference.methods',
  'from dops_worker.runtime.main import run',
  'run(frames_in, frames_out)',
].join('\n');

const REPO_ROOT = resolve(__dirname, '../../../..');
const PYTHON_WORKERS = join(REPO_ROOT, 'python-workers');

/** The folders an inference worker started by a test or benchmark reads and writes. */
export interface InferenceWorkerRoots {
  artifactRoot: string;
  inputRoot: string;
  /** One or more model roots (joined with the platform's path delimiter). */
  modelRoots: string | readonly string[];
}

/**
 * How to start the real inference worker on the CPU backend (command, args, cwd, env), for a
 * WorkerPool's `supervisor` options: the repo's Python (DOPS_PYTHON or .venv), offline, with the
 * given roots. Throws nothing; timeouts stay the caller's.
 */
export function inferenceWorkerProcess(roots: InferenceWorkerRoots): {
  command: string;
  args: string[];
  cwd: string;
  env: NodeJS.ProcessEnv;
} {
  const modelRoots = typeof roots.modelRoots === 'string' ? [roots.modelRoots] : roots.modelRoots;
  return {
    command: resolvePythonExecutable({ repoRoot: REPO_ROOT }),
    args: ['-c', INFERENCE_WORKER_MAIN],
    cwd: PYTHON_WORKERS,
    env: {
      ...process.env,
      DOPS_BACKEND: 'cpu',
      HF_HUB_OFFLINE: '1',
      PYTHONPATH: join(PYTHON_WORKERS, 'src'),
      DOPS_ARTIFACT_ROOT: roots.artifactRoot,
      DOPS_INPUT_ROOT: roots.inputRoot,
      DOPS_MODEL_ROOTS: modelRoots.join(delimiter),
    },
  };
}
