import { DopsError, type FieldViolation } from '@dops/errors';
import { DEFAULT_MAX_FRAME_BYTES } from './ndjson-decoder';
import { silentLogger, type SupervisorLogger } from './logger';

/** How a WorkerSupervisor spawns, watches and restarts its child. Every field but `command` has a default. */
export interface WorkerSupervisorOptions {
  /** Executable to spawn, e.g. `resolvePythonExecutable()`. Required. */
  command: string;
  /** Arguments. Default `['-m', 'dops_worker']`. */
  args?: string[];
  /** Child environment. Default: this process's environment. DOPS_PARENT_PID, PYTHONUNBUFFERED=1 and DOPS_WORKER_MAX_FRAME_BYTES are always added. */
  env?: NodeJS.ProcessEnv;
  /** Working directory. Default: this process's cwd. */
  cwd?: string;
  /** Name used in logs and errors. Default `'worker'`. */
  name?: string;
  /** Params of `initialize` (protocolVersion 1 is added). Default `{}`. */
  initializeParams?: Record<string, unknown>;
  /** Longest wait for the `initialize` reply; a miss kills the child and counts as a crash. Default 30 000. */
  handshakeTimeoutMs?: number;
  /** Per-request timeout when the caller gives none. Default 300 000. */
  requestTimeoutMs?: number;
  /** After `$/cancelRequest`, how long the worker has to reply before it is killed and restarted. Default 5 000. */
  cancelGraceMs?: number;
  /** Longest a request waits for a starting worker to become ready (also bounded by its own timeout). Default 60 000. */
  readyTimeoutMs?: number;
  /** Interval of `worker.ping`. Default 5 000. */
  heartbeatIntervalMs?: number;
  /** Pings missed in a row that mean the worker hangs (kill, restart). Default 3. */
  heartbeatMisses?: number;
  /** First restart delay. Default 500. */
  restartInitialDelayMs?: number;
  /** Largest restart delay. Default 30 000. */
  restartMaxDelayMs?: number;
  /** Growth of the delay per consecutive crash. Default 2. */
  restartMultiplier?: number;
  /** Fraction of the delay taken off at random, 0..1. Default 0.2. */
  restartJitter?: number;
  /** Crashes within `crashLoopWindowMs` that are still restarted; one more makes the state `failed`. Default 5. */
  crashLoopLimit?: number;
  /** Window of the crash-loop limit. Default 60 000. */
  crashLoopWindowMs?: number;
  /** A worker ready this long before it crashes clears the crash count and backoff. Default 30 000. */
  stableStartMs?: number;
  /** stop(): longest wait for in-flight requests to finish before shutting down. Default 10 000. */
  drainTimeoutMs?: number;
  /** stop(): longest wait for the `worker.shutdown` reply and exit. Default 5 000. */
  shutdownTimeoutMs?: number;
  /** stop(): longest wait for exit after stdin is closed. Default 2 000. */
  stdinCloseTimeoutMs?: number;
  /** stop(): longest wait for exit after SIGTERM to the process group (SIGKILL follows). Default 3 000. */
  sigtermTimeoutMs?: number;
  /** Largest frame each way, in bytes. Default 16 MiB. */
  maxFrameBytes?: number;
  /** Where supervisor and worker logs go. Default: dropped. */
  logger?: SupervisorLogger;
}

export type ResolvedSupervisorOptions = Required<Omit<WorkerSupervisorOptions, 'env' | 'cwd'>> & {
  env: NodeJS.ProcessEnv;
  cwd: string | undefined;
};

const DEFAULTS = {
  args: ['-m', 'dops_worker'],
  name: 'worker',
  initializeParams: {},
  handshakeTimeoutMs: 30_000,
  requestTimeoutMs: 300_000,
  cancelGraceMs: 5_000,
  readyTimeoutMs: 60_000,
  heartbeatIntervalMs: 5_000,
  heartbeatMisses: 3,
  restartInitialDelayMs: 500,
  restartMaxDelayMs: 30_000,
  restartMultiplier: 2,
  restartJitter: 0.2,
  crashLoopLimit: 5,
  crashLoopWindowMs: 60_000,
  stableStartMs: 30_000,
  drainTimeoutMs: 10_000,
  shutdownTimeoutMs: 5_000,
  stdinCloseTimeoutMs: 2_000,
  sigtermTimeoutMs: 3_000,
  maxFrameBytes: DEFAULT_MAX_FRAME_BYTES,
} as const;

const POSITIVE = [
  'handshakeTimeoutMs',
  'requestTimeoutMs',
  'readyTimeoutMs',
  'heartbeatIntervalMs',
  'heartbeatMisses',
  'restartMultiplier',
  'maxFrameBytes',
  'crashLoopWindowMs',
] as const;
const NON_NEGATIVE = [
  'cancelGraceMs',
  'restartInitialDelayMs',
  'restartMaxDelayMs',
  'crashLoopLimit',
  'stableStartMs',
  'drainTimeoutMs',
  'shutdownTimeoutMs',
  'stdinCloseTimeoutMs',
  'sigtermTimeoutMs',
] as const;

/** Applies the defaults once; throws DopsError INVALID_ARGUMENT naming every bad field. */
export function resolveSupervisorOptions(options: WorkerSupervisorOptions): ResolvedSupervisorOptions {
  const resolved: ResolvedSupervisorOptions = {
    ...DEFAULTS,
    args: [...DEFAULTS.args],
    logger: silentLogger,
    ...(Object.fromEntries(
      Object.entries(options).filter(([, v]) => v !== undefined),
    ) as WorkerSupervisorOptions),
    env: options.env ?? process.env,
    cwd: options.cwd,
  } as ResolvedSupervisorOptions;
  const violations: FieldViolation[] = [];
  if (typeof resolved.command !== 'string' || resolved.command === '') {
    violations.push({ field: 'command', description: 'must be a non-empty string' });
  }
  for (const field of POSITIVE) {
    const value = resolved[field];
    if (typeof value !== 'number' || !(value > 0))
      violations.push({ field, description: `must be a number > 0, got ${String(value)}` });
  }
  for (const field of NON_NEGATIVE) {
    const value = resolved[field];
    if (typeof value !== 'number' || !(value >= 0))
      violations.push({ field, description: `must be a number >= 0, got ${String(value)}` });
  }
  if (!(resolved.restartJitter >= 0 && resolved.restartJitter <= 1)) {
    violations.push({
      field: 'restartJitter',
      description: `must be within 0..1, got ${String(resolved.restartJitter)}`,
    });
  }
  const error = DopsError.fromViolations(violations);
  if (error) throw error;
  return resolved;
}
