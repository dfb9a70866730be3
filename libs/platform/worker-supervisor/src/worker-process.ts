import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { DopsError, fromWorkerError } from '@dops/errors';
import {
  CANCEL_METHOD,
  METHOD_NOT_FOUND,
  PROGRESS_METHOD,
  type JsonRpcMessage,
  type JsonRpcResponse,
  type ProgressParams,
  type RequestId,
} from './json-rpc';
import { LineSplitter, NdjsonDecoder } from './ndjson-decoder';
import type { SupervisorLogger } from './logger';
import { emitWorkerLog, parseWorkerLogLine, type WorkerLogRecord } from './worker-log';

/** How a child ended. */
export interface WorkerExit {
  pid: number | undefined;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Why the supervisor killed it (protocol error, hang, ...); undefined when it exited by itself. */
  reason: DopsError | undefined;
}

export interface WorkerProcessSpec {
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  cwd: string | undefined;
  maxFrameBytes: number;
}

export interface WorkerProcessHooks {
  /** After every pending call has been rejected. */
  onExit(exit: WorkerExit): void;
  /** The stdout stream broke the protocol; the process should be killed. */
  onProtocolError(error: DopsError): void;
  /** A reply carried `data.fatal`; it was delivered, the process should be restarted. */
  onFatalReply(error: DopsError): void;
  onLog(record: WorkerLogRecord): void;
}

/** Bounds of the steps of a graceful stop, in ms; 0 skips a step. */
export interface ShutdownSteps {
  drainMs: number;
  shutdownRequestMs: number;
  stdinCloseMs: number;
  sigtermMs: number;
}

export interface CallOptions {
  onProgress?: (progress: ProgressParams) => void;
  /** Supervisor traffic (initialize, ping, shutdown): not counted as an active request. */
  internal?: boolean;
}

interface PendingCall {
  method: string;
  internal: boolean;
  onProgress?: (progress: ProgressParams) => void;
  resolve(value: unknown): void;
  reject(error: DopsError): void;
  /** Set once `$/cancelRequest` was sent: the call fails with this whatever the worker replies. */
  cancelledWith?: DopsError;
}

// After 'exit', how long stdout may still deliver the last frames before the exit is final.
const STDOUT_DRAIN_MS = 100;

/**
 * One spawned worker child: its own process group, NDJSON framing on stdin/stdout, JSON log
 * lines on stderr, and the calls pending on it. Never reused: when it exits, every pending call
 * is rejected (UNAVAILABLE unless it was cancelled) and the supervisor spawns a new one.
 */
export class WorkerProcess {
  readonly pid: number | undefined;
  readonly spawnedAt = Date.now();
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly pending = new Map<RequestId, PendingCall>();
  private readonly idleWaiters: Array<() => void> = [];
  private readonly logger: SupervisorLogger;
  private nextId = 1;
  private killReason: DopsError | undefined;
  private exitStatus: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private stdoutEnded = false;
  private finished = false;
  readonly exited: Promise<WorkerExit>;
  private resolveExited!: (exit: WorkerExit) => void;

  constructor(
    private readonly spec: WorkerProcessSpec,
    logger: SupervisorLogger,
    private readonly hooks: WorkerProcessHooks,
  ) {
    this.exited = new Promise((resolve) => (this.resolveExited = resolve));
    this.child = spawn(spec.command, spec.args, {
      cwd: spec.cwd,
      env: {
        ...spec.env,
        DOPS_PARENT_PID: String(process.pid),
        PYTHONUNBUFFERED: '1',
        DOPS_WORKER_MAX_FRAME_BYTES: String(spec.maxFrameBytes),
      },
      stdio: ['pipe', 'pipe', 'pipe'],
      // Own process group: signals reach the worker and anything it started, and a Ctrl-C in
      // the service's terminal does not kill workers behind the supervisor's back.
      detached: true,
      windowsHide: true,
    });
    this.pid = this.child.pid;
    this.logger = logger.child({ workerPid: this.pid });

    const decoder = new NdjsonDecoder(
      (message) => this.dispatch(message),
      (error) => {
        this.logger.error({ err: error }, error.message);
        this.hooks.onProtocolError(error);
      },
      spec.maxFrameBytes,
    );
    this.child.stdout.on('data', (chunk: Buffer) => decoder.push(chunk));
    this.child.stdout.on('end', () => {
      decoder.end();
      this.stdoutEnded = true;
      if (this.exitStatus) this.finish();
    });
    const stderrLines = new LineSplitter(
      spec.maxFrameBytes,
      (line) => this.onStderrLine(line.toString('utf8')),
      (bytes) => this.logger.warn({ bytes }, 'worker stderr line over the frame limit dropped'),
    );
    this.child.stderr.on('data', (chunk: Buffer) => stderrLines.push(chunk));
    this.child.stderr.on('end', () => stderrLines.end());
    // EPIPE when the child is gone: the exit handler reports it.
    this.child.stdin.on('error', (err) => this.logger.debug({ err }, 'worker stdin error'));
    this.child.on('error', (err) => {
      // spawn failure (ENOENT, EACCES): there will be no 'exit'.
      this.killReason ??= DopsError.unavailable(`cannot start worker '${spec.command}': ${err.message}`, err);
      this.exitStatus ??= { code: null, signal: null };
      this.finish();
    });
    this.child.on('exit', (code, signal) => {
      this.exitStatus = { code, signal };
      if (this.stdoutEnded) this.finish();
      else setTimeout(() => this.finish(), STDOUT_DRAIN_MS);
    });
  }

  /** True until the child has exited and its pending calls were rejected. */
  get alive(): boolean {
    return !this.finished;
  }

  /** True once kill() was called: the child must not be used even while it still runs. */
  get killed(): boolean {
    return this.killReason !== undefined;
  }

  /** Pending calls that are not supervisor traffic. */
  get activeRequests(): number {
    let n = 0;
    for (const call of this.pending.values()) if (!call.internal) n += 1;
    return n;
  }

  /**
   * Sends a request; `result` settles with the reply (worker errors as DopsErrors via
   * fromWorkerError) or rejects UNAVAILABLE when the child exits first. Throws nothing: a frame
   * over the limit rejects INVALID_ARGUMENT, a dead child UNAVAILABLE.
   */
  call(
    method: string,
    params: Record<string, unknown>,
    options: CallOptions = {},
  ): { id: number; result: Promise<unknown> } {
    const id = this.nextId++;
    const result = new Promise<unknown>((resolve, reject) => {
      if (this.finished) {
        reject(DopsError.unavailable(`worker ${this.pid} has exited`));
        return;
      }
      this.pending.set(id, {
        method,
        internal: options.internal ?? false,
        onProgress: options.onProgress,
        resolve,
        reject,
      });
      try {
        this.write({ jsonrpc: '2.0', id, method, params });
      } catch (err) {
        this.settle(id);
        reject(err);
      }
    });
    return { id, result };
  }

  /** Sends `$/cancelRequest`; the call will fail with `reason` whatever the worker replies. False when it is not pending. */
  cancel(id: number, reason: DopsError): boolean {
    const call = this.pending.get(id);
    if (!call) return false;
    call.cancelledWith ??= reason;
    try {
      this.write({ jsonrpc: '2.0', method: CANCEL_METHOD, params: { id } });
    } catch (err) {
      this.logger.debug({ err, id }, 'could not send $/cancelRequest');
    }
    return true;
  }

  /** Resolves when no non-internal call is pending (at once if none is). */
  whenIdle(): Promise<void> {
    if (this.activeRequests === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Closes stdin: the worker exits on EOF. */
  closeStdin(): void {
    this.child.stdin.end();
  }

  /** Sends `signal` to the whole process group (the child alone on Windows); false when nothing was there. */
  signal(signal: NodeJS.Signals): boolean {
    if (this.pid === undefined) return false;
    try {
      if (process.platform === 'win32') return this.child.kill(signal);
      process.kill(-this.pid, signal);
      return true;
    } catch {
      return this.finished ? false : this.child.kill(signal);
    }
  }

  /** SIGKILL to the process group, remembering why: the exit's `reason`. */
  kill(reason: DopsError): void {
    this.killReason ??= reason;
    this.signal('SIGKILL');
  }

  /**
   * Graceful stop, each step bounded and skipped once the child is gone: wait for in-flight
   * calls → `worker.shutdown` → close stdin → SIGTERM → SIGKILL to the process group. Resolves
   * when the child has exited (or survived SIGKILL, logged); never rejects.
   */
  async shutdown(steps: ShutdownSteps): Promise<void> {
    if (steps.drainMs > 0) await Promise.race([this.whenIdle(), this.waitForExit(steps.drainMs)]);
    if (this.alive && steps.shutdownRequestMs > 0) {
      const reply = this.call('worker.shutdown', {}, { internal: true }).result.catch(() => undefined);
      const started = Date.now();
      await Promise.race([reply, this.waitForExit(steps.shutdownRequestMs)]);
      // the worker replies first, then exits 0
      await this.waitForExit(Math.max(0, steps.shutdownRequestMs - (Date.now() - started)));
    }
    if (this.alive) {
      this.closeStdin();
      await this.waitForExit(steps.stdinCloseMs);
    }
    if (this.alive) {
      this.signal('SIGTERM');
      await this.waitForExit(steps.sigtermMs);
    }
    if (this.alive) {
      this.kill(DopsError.unavailable(`worker ${this.pid} stopped`));
      if (!(await this.waitForExit(steps.sigtermMs))) this.logger.error({}, 'worker survived SIGKILL');
    }
  }

  /** Resolves true once the child has exited, false after `ms`. */
  waitForExit(ms: number): Promise<boolean> {
    if (this.finished) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      void this.exited.then(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  private write(message: object): void {
    if (this.finished || !this.child.stdin.writable)
      throw DopsError.unavailable(`worker ${this.pid} is not accepting input`);
    const frame = JSON.stringify(message);
    const bytes = Buffer.byteLength(frame, 'utf8');
    if (bytes > this.spec.maxFrameBytes) {
      throw DopsError.invalidArgument(
        'params',
        `request frame of ${bytes} bytes exceeds the ${this.spec.maxFrameBytes}-byte limit`,
      );
    }
    this.child.stdin.write(frame + '\n');
  }

  private dispatch(incoming: JsonRpcMessage): void {
    if (incoming.kind === 'response') {
      this.onResponse(incoming.message);
      return;
    }
    if (incoming.kind === 'notification') {
      if (incoming.message.method === PROGRESS_METHOD)
        this.onProgress(incoming.message.params as ProgressParams);
      else this.logger.debug({ method: incoming.message.method }, 'ignored worker notification');
      return;
    }
    // The protocol defines no worker → supervisor requests; answer so the worker never waits.
    const { id, method } = incoming.message;
    try {
      this.write({
        jsonrpc: '2.0',
        id,
        error: { code: METHOD_NOT_FOUND, message: `method not found: ${method}` },
      });
    } catch {
      // the exit handler reports a dead child
    }
  }

  private onResponse(response: JsonRpcResponse): void {
    if (response.id === null) {
      this.logger.error(
        { error: 'error' in response ? response.error : undefined },
        'worker rejected a frame it could not read',
      );
      return;
    }
    const call = this.settle(response.id);
    if (!call) {
      this.logger.warn({ id: response.id }, 'reply to no pending request');
      return;
    }
    if ('result' in response) {
      if (call.cancelledWith) call.reject(call.cancelledWith);
      else call.resolve(response.result);
      return;
    }
    const error = fromWorkerError(response.error);
    error.metadata['jsonrpcCode'] = String(response.error.code);
    call.reject(
      call.cancelledWith
        ? new DopsError(call.cancelledWith.code, call.cancelledWith.message, {
            retryable: call.cancelledWith.retryable,
            cause: error,
          })
        : error,
    );
    if (error.metadata['fatal'] === 'true') this.hooks.onFatalReply(error);
  }

  private onProgress(params: ProgressParams | undefined): void {
    const call = params && params.id !== undefined ? this.pending.get(params.id) : undefined;
    if (!call?.onProgress) return;
    try {
      call.onProgress(params as ProgressParams);
    } catch (err) {
      this.logger.warn({ err, id: params?.id }, 'onProgress callback threw');
    }
  }

  private onStderrLine(line: string): void {
    if (line.trim() === '') return;
    const record = parseWorkerLogLine(line, this.pid);
    emitWorkerLog(this.logger, record);
    this.hooks.onLog(record);
  }

  private settle(id: RequestId): PendingCall | undefined {
    const call = this.pending.get(id);
    if (!call) return undefined;
    this.pending.delete(id);
    if (!call.internal && this.activeRequests === 0) for (const wake of this.idleWaiters.splice(0)) wake();
    return call;
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    // Whatever the child left behind in its group goes with it.
    if (this.pid !== undefined && process.platform !== 'win32') {
      try {
        process.kill(-this.pid, 'SIGKILL');
      } catch {
        // ESRCH: the group is already empty
      }
    }
    const { code, signal } = this.exitStatus ?? { code: null, signal: null };
    const how = signal ? `signal ${signal}` : `code ${code}`;
    const cause = this.killReason;
    const message = cause
      ? `${cause.message} (worker ${this.pid} killed)`
      : `worker ${this.pid} exited with ${how}`;
    for (const [id, call] of [...this.pending]) {
      this.settle(id);
      call.reject(call.cancelledWith ?? DopsError.unavailable(message, cause));
    }
    for (const wake of this.idleWaiters.splice(0)) wake();
    const exit: WorkerExit = { pid: this.pid, code, signal, reason: cause };
    this.resolveExited(exit);
    this.hooks.onExit(exit);
  }
}
