import type { BaseServiceConfig } from '@dops/config';
import { resolvePythonExecutable, type SupervisorLogger } from '@dops/worker-supervisor';
import { WorkerPool } from './worker-pool';

/**
 * The worker pool of a service from its `worker` config: python from the config or, when
 * unset, DOPS_PYTHON / the repository's .venv / python3; the heartbeat timeout becomes a count
 * of missed pings. Workers inherit this process's environment plus `workerEnv`.
 */
export function workerPoolFromConfig(
  name: string,
  worker: BaseServiceConfig['worker'],
  logger: SupervisorLogger,
  /** Variables added to this process's environment for the workers (e.g. their file roots). */
  workerEnv: Record<string, string> = {},
): WorkerPool {
  return new WorkerPool({
    name,
    backend: worker.backend,
    logger,
    supervisor: {
      command: worker.python ?? resolvePythonExecutable(),
      env: { ...process.env, ...workerEnv },
      handshakeTimeoutMs: worker.handshakeTimeoutMs,
      heartbeatIntervalMs: worker.heartbeatIntervalMs,
      heartbeatMisses: Math.max(1, Math.ceil(worker.heartbeatTimeoutMs / worker.heartbeatIntervalMs)),
      crashLoopLimit: worker.maxRestarts,
      crashLoopWindowMs: worker.restartWindowMs,
      shutdownTimeoutMs: worker.stopTimeoutMs,
    },
  });
}
