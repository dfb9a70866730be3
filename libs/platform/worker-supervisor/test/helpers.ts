import path from 'node:path';
import { existsSync } from 'node:fs';
import {
  resolvePythonExecutable,
  type SupervisorLogger,
  type WorkerState,
  type WorkerSupervisor,
  type WorkerSupervisorOptions,
} from '../src';

export const REPO_ROOT = path.resolve(__dirname, '../../../..');
export const PYTHON_WORKERS = path.join(REPO_ROOT, 'python-workers');
export const PYTHON = resolvePythonExecutable({ repoRoot: REPO_ROOT });

/** Options that run the real worker on CPU with short timeouts. */
export function realWorkerOptions(overrides: Partial<WorkerSupervisorOptions> = {}): WorkerSupervisorOptions {
  return {
    command: PYTHON,
    cwd: PYTHON_WORKERS,
    env: { ...process.env, DOPS_BACKEND: 'cpu', PYTHONPATH: path.join(PYTHON_WORKERS, 'src') },
    initializeParams: { backend: 'cpu' },
    handshakeTimeoutMs: 20_000,
    requestTimeoutMs: 10_000,
    cancelGraceMs: 1_000,
    readyTimeoutMs: 20_000,
    heartbeatIntervalMs: 1_000,
    heartbeatMisses: 3,
    restartInitialDelayMs: 50,
    restartMaxDelayMs: 200,
    shutdownTimeoutMs: 2_000,
    stdinCloseTimeoutMs: 1_000,
    sigtermTimeoutMs: 1_000,
    drainTimeoutMs: 1_000,
    ...overrides,
  };
}

/** The fixture worker `<name>.py`: the Python team's copy when present, else this project's. */
export function fixturePath(name: string): string {
  const shared = path.join(PYTHON_WORKERS, 'tests', 'fixtures', `${name}.py`);
  return existsSync(shared) ? shared : path.join(__dirname, 'fixtures', `${name}.py`);
}

/** Options that run one fixture worker instead of `-m dops_worker`. */
export function fixtureOptions(
  name: string,
  overrides: Partial<WorkerSupervisorOptions> = {},
): WorkerSupervisorOptions {
  // most fixtures ignore worker.shutdown: short stop steps keep afterEach quick
  return realWorkerOptions({
    args: [fixturePath(name)],
    handshakeTimeoutMs: 10_000,
    shutdownTimeoutMs: 200,
    stdinCloseTimeoutMs: 300,
    sigtermTimeoutMs: 300,
    ...overrides,
  });
}

/** True while a process with this pid exists (signal 0 throws ESRCH once it is gone). */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
}

/** Resolves when the supervisor reaches `state` (at once if it is there); rejects after `ms`. */
export function waitForState(supervisor: WorkerSupervisor, state: WorkerState, ms = 15_000): Promise<void> {
  if (supervisor.state === state) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      supervisor.off('state', onState);
      reject(new Error(`state ${supervisor.state} after ${ms} ms, wanted ${state}`));
    }, ms);
    const onState = (s: WorkerState): void => {
      if (s !== state) return;
      clearTimeout(timer);
      supervisor.off('state', onState);
      resolve();
    };
    supervisor.on('state', onState);
  });
}

/** Records every state change from now on. */
export function recordStates(supervisor: WorkerSupervisor): WorkerState[] {
  const states: WorkerState[] = [];
  supervisor.on('state', (s) => states.push(s));
  return states;
}

export interface CapturedLog {
  level: string;
  fields: Record<string, unknown>;
  msg: string | undefined;
}

/** A pino-shaped logger that keeps what it is given. */
export function captureLogger(
  into: CapturedLog[] = [],
  bindings: Record<string, unknown> = {},
): SupervisorLogger & { records: CapturedLog[] } {
  const at =
    (level: string) =>
    (fields: object, msg?: string): void => {
      into.push({ level, fields: { ...bindings, ...fields }, msg });
    };
  return {
    records: into,
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (more) => captureLogger(into, { ...bindings, ...more }),
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
