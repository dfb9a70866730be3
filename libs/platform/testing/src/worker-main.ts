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
