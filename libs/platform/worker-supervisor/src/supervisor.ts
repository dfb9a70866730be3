import { EventEmitter } from 'node:events';
import { DopsError, ensureDopsError } from '@dops/errors';
import { Heartbeat } from './heartbeat';
import type { SupervisorLogger } from './logger';
import {
  resolveSupervisorOptions,
  type ResolvedSupervisorOptions,
  type WorkerSupervisorOptions,
} from './options';
import { sendRequest, type RequestHost, type RequestOptions } from './request-call';
import { RestartPolicy } from './restart-policy';
import { PROTOCOL_VERSION, type InitializeResult, type PingResult } from './worker-methods';
import type { WorkerLogRecord } from './worker-log';
import { WorkerProcess, type WorkerExit } from './worker-process';

/**
 * Lifecycle of the supervised worker. `stopped` before start() and after stop(); `crashed`
 * while a restart is pending; `failed` once the crash-loop limit is hit (until reset()).
 */
export type WorkerState = 'starting' | 'ready' | 'draining' | 'stopped' | 'crashed' | 'failed';

export interface WorkerHeartbeat extends PingResult {
  /** Epoch ms the reply arrived. */
  at: number;
}

export interface SupervisorEvents {
  state: [state: WorkerState, previous: WorkerState];
  heartbeat: [beat: WorkerHeartbeat];
  log: [record: WorkerLogRecord];
  exit: [exit: WorkerExit];
}

export interface WorkerHealth {
  state: WorkerState;
  pid: number | undefined;
  /** Children spawned after the first (crash restarts and reset()). */
  restarts: number;
  /** Epoch ms of the last ping reply. */
  lastHeartbeatAt: number | undefined;
  /** Why the last child died or was killed. */
  lastError: DopsError | undefined;
  /** Requests not yet settled, those waiting for a ready worker included. */
  activeRequests: number;
  initializeResult: InitializeResult | undefined;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Runs one worker child over the JSON-RPC/NDJSON protocol of docs/worker-protocol.md: spawns it
 * in its own process group, handshakes, pings, times out and cancels requests, rejects every
 * pending request UNAVAILABLE the moment the child exits, restarts with jittered backoff up to a
 * crash-loop limit, and stops it gracefully. One supervisor per child; it never reuses a child
 * whose initialize failed.
 */
export class WorkerSupervisor extends EventEmitter<SupervisorEvents> {
  readonly options: ResolvedSupervisorOptions;
  private readonly logger: SupervisorLogger;
  private readonly policy: RestartPolicy;
  private readonly requestHost: RequestHost;
  private currentState: WorkerState = 'stopped';
  private worker: WorkerProcess | undefined;
  private heartbeat: Heartbeat | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private readyAt: number | undefined;
  private stopping: Promise<void> | undefined;
  private stopRequested = false;
  private restarts = 0;
  private spawned = 0;
  private unsettled = 0;
  private lastHeartbeatAt: number | undefined;
  private lastError: DopsError | undefined;
  private initializeResult: InitializeResult | undefined;

  /** Throws DopsError INVALID_ARGUMENT for bad options; starts nothing (call start()). */
  constructor(options: WorkerSupervisorOptions) {
    super();
    this.options = resolveSupervisorOptions(options);
    this.logger = this.options.logger.child({ component: 'worker-supervisor', worker: this.options.name });
    this.policy = new RestartPolicy({
      initialDelayMs: this.options.restartInitialDelayMs,
      maxDelayMs: this.options.restartMaxDelayMs,
      multiplier: this.options.restartMultiplier,
      jitter: this.options.restartJitter,
      limit: this.options.crashLoopLimit,
      windowMs: this.options.crashLoopWindowMs,
      stableStartMs: this.options.stableStartMs,
    });
    this.requestHost = {
      options: this.options,
      logger: this.logger,
      readyWorker: (timeoutMs, signal) => this.readyWorker(timeoutMs, signal),
      kill: (worker, reason) => this.kill(worker, reason),
    };
  }

  get state(): WorkerState {
    return this.currentState;
  }

  /**
   * Spawns the worker when stopped and resolves once it is ready. Rejects UNAVAILABLE when it is
   * not ready within readyTimeoutMs or the crash-loop limit is hit first, FAILED_PRECONDITION
   * while stopping or failed (use reset()).
   */
  start(): Promise<void> {
    if (this.stopRequested || this.currentState === 'failed') {
      return Promise.reject(
        new DopsError(
          'FAILED_PRECONDITION',
          `worker ${this.options.name} is ${this.currentState}; ${this.currentState === 'failed' ? 'reset() it' : 'wait for stop()'}`,
        ),
      );
    }
    if (this.currentState === 'stopped') {
      this.policy.clear();
      this.launch();
    }
    return this.readyWorker(this.options.readyTimeoutMs).then(() => undefined);
  }

  /**
   * Sends one request and resolves with its result. Rejects with the worker's error (via
   * fromWorkerError), UNAVAILABLE (retryable) when the child dies or no worker becomes ready in
   * time, CANCELLED when `signal` aborts, DEADLINE_EXCEEDED when the timeout or deadline passes,
   * INVALID_ARGUMENT for a bad method/params or a frame over maxFrameBytes.
   */
  request<T = unknown>(
    method: string,
    params: Record<string, unknown> = {},
    options: RequestOptions = {},
  ): Promise<T> {
    this.unsettled += 1;
    return sendRequest<T>(this.requestHost, method, params, options).finally(() => {
      this.unsettled -= 1;
    });
  }

  /**
   * Graceful stop: draining (new requests rejected; in-flight ones get drainTimeoutMs), then
   * `worker.shutdown` → close stdin → SIGTERM → SIGKILL to the process group, each step bounded.
   * Resolves when the child is gone and the state is `stopped`; never rejects.
   */
  stop(): Promise<void> {
    if (!this.stopping) {
      this.stopRequested = true;
      this.stopping = this.runStop().finally(() => (this.stopping = undefined));
    }
    return this.stopping;
  }

  /**
   * Clears the crash count and restarts now: the current child (if any) is killed, its pending
   * requests fail UNAVAILABLE, and a new one is spawned without backoff. Resolves when it is
   * ready; rejects like start(), and FAILED_PRECONDITION while stopping or stopped.
   */
  reset(): Promise<void> {
    if (this.stopRequested || this.currentState === 'stopped') {
      return Promise.reject(
        new DopsError(
          'FAILED_PRECONDITION',
          `worker ${this.options.name} is ${this.currentState}; use start()`,
        ),
      );
    }
    this.policy.clear();
    clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    const old = this.detach();
    old?.kill(DopsError.unavailable(`worker ${this.options.name} reset`));
    this.restarts += 1;
    this.launch();
    return this.readyWorker(this.options.readyTimeoutMs).then(() => undefined);
  }

  /** A snapshot of the worker's state; never throws. */
  stats(): WorkerHealth {
    return {
      state: this.currentState,
      pid: this.worker?.pid,
      restarts: this.restarts,
      lastHeartbeatAt: this.lastHeartbeatAt,
      lastError: this.lastError,
      activeRequests: this.unsettled,
      initializeResult: this.initializeResult,
    };
  }

  /** Same as stats(). */
  health(): WorkerHealth {
    return this.stats();
  }

  private launch(): void {
    this.setState('starting');
    this.spawned += 1;
    const worker: WorkerProcess = new WorkerProcess(this.options, this.logger, {
      onExit: (exit) => this.onExit(worker, exit),
      onProtocolError: (error) => this.kill(worker, error),
      onFatalReply: (error) =>
        this.kill(worker, DopsError.unavailable(`worker reported a fatal error: ${error.message}`, error)),
      onLog: (record) => this.emit('log', record),
    });
    this.worker = worker;
    this.logger.info({ workerPid: worker.pid, spawn: this.spawned }, 'worker spawned');
    void this.handshake(worker);
  }

  private async handshake(worker: WorkerProcess): Promise<void> {
    const { handshakeTimeoutMs } = this.options;
    const timer = setTimeout(
      () =>
        this.kill(
          worker,
          DopsError.unavailable(`worker did not answer initialize within ${handshakeTimeoutMs} ms`),
        ),
      handshakeTimeoutMs,
    );
    try {
      const result = (await worker.call(
        'initialize',
        { ...this.options.initializeParams, protocolVersion: PROTOCOL_VERSION },
        { internal: true },
      ).result) as InitializeResult;
      if (result?.protocolVersion !== PROTOCOL_VERSION) {
        throw new DopsError(
          'FAILED_PRECONDITION',
          `worker speaks protocol ${String(result?.protocolVersion)}, expected ${PROTOCOL_VERSION}`,
        );
      }
      // the same chunk may have carried a protocol error right after the reply
      if (worker !== this.worker || worker.killed || this.currentState !== 'starting') return;
      this.initializeResult = result;
      this.readyAt = Date.now();
      this.heartbeat = new Heartbeat(worker, {
        intervalMs: this.options.heartbeatIntervalMs,
        misses: this.options.heartbeatMisses,
        onBeat: (beat, at) => {
          this.lastHeartbeatAt = at;
          this.emit('heartbeat', { ...beat, at });
        },
        onHung: (missed) =>
          this.kill(worker, DopsError.unavailable(`worker missed ${missed} heartbeats in a row`)),
      });
      this.heartbeat.start();
      this.logger.info({ workerPid: worker.pid, backend: result.backend }, 'worker ready');
      this.setState('ready');
    } catch (err) {
      const error = ensureDopsError(err);
      // A child whose initialize failed is never reused.
      if (worker.alive)
        this.kill(worker, DopsError.unavailable(`worker initialize failed: ${error.message}`, error));
    } finally {
      clearTimeout(timer);
    }
  }

  private kill(worker: WorkerProcess, reason: DopsError): void {
    if (!worker.alive) return;
    this.logger.warn({ workerPid: worker.pid, reason: reason.message }, 'killing worker');
    if (worker === this.worker) this.lastError = reason;
    worker.kill(reason);
  }

  /** Forgets the current child (its exit will not trigger a restart); returns it. */
  private detach(): WorkerProcess | undefined {
    const worker = this.worker;
    this.worker = undefined;
    this.heartbeat?.stop();
    this.heartbeat = undefined;
    this.readyAt = undefined;
    return worker;
  }

  private onExit(worker: WorkerProcess, exit: WorkerExit): void {
    this.emit('exit', exit);
    if (worker !== this.worker || this.stopRequested) return;
    const readyFor = this.readyAt === undefined ? 0 : Date.now() - this.readyAt;
    this.detach();
    const how = exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`;
    this.lastError = exit.reason ?? DopsError.unavailable(`worker ${exit.pid} exited with ${how}`);
    this.logger.error(
      { workerPid: exit.pid, code: exit.code, signal: exit.signal, reason: exit.reason?.message },
      'worker exited unexpectedly',
    );
    this.setState('crashed');
    const decision = this.policy.recordCrash(Date.now(), readyFor);
    if (!decision.restart) {
      this.logger.error(
        { crashes: decision.crashesInWindow, windowMs: this.options.crashLoopWindowMs },
        'crash-loop limit reached; not restarting until reset()',
      );
      this.setState('failed');
      return;
    }
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      this.restarts += 1;
      this.launch();
    }, decision.delayMs);
  }

  private async runStop(): Promise<void> {
    clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    const worker = this.worker;
    if (worker) {
      const wasReady = this.currentState === 'ready';
      this.setState('draining');
      this.heartbeat?.stop();
      const o = this.options;
      await worker.shutdown({
        drainMs: wasReady ? o.drainTimeoutMs : 0,
        // a worker still starting cannot be asked; stdin EOF is its first step
        shutdownRequestMs: wasReady ? o.shutdownTimeoutMs : 0,
        stdinCloseMs: o.stdinCloseTimeoutMs,
        sigtermMs: o.sigtermTimeoutMs,
      });
      this.detach();
    }
    this.stopRequested = false;
    this.setState('stopped');
  }

  private setState(state: WorkerState): void {
    const previous = this.currentState;
    if (previous === state) return;
    this.currentState = state;
    this.logger.debug({ state, previous }, 'worker state');
    this.emit('state', state, previous);
  }

  /** The ready child, waiting for it while starting/crashed; rejects UNAVAILABLE when none comes in `timeoutMs`. */
  private readyWorker(timeoutMs: number, signal?: AbortSignal): Promise<WorkerProcess> {
    const now = this.readyOrRefusal();
    if (now) return now;
    return new Promise((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        this.off('state', onState);
        signal?.removeEventListener('abort', done);
      };
      const onState = (): void => {
        const outcome = this.readyOrRefusal();
        if (!outcome) return;
        done();
        outcome.then(resolve, reject);
      };
      const timer = setTimeout(
        () => {
          done();
          reject(
            DopsError.unavailable(
              `worker ${this.options.name} not ready within ${timeoutMs} ms (state ${this.currentState})`,
              this.lastError,
            ),
          );
        },
        Math.min(timeoutMs, MAX_TIMER_MS),
      );
      signal?.addEventListener('abort', done, { once: true });
      this.on('state', onState);
    });
  }

  /** Settled promise for the states that decide at once; undefined while starting or crashed. */
  private readyOrRefusal(): Promise<WorkerProcess> | undefined {
    const name = this.options.name;
    switch (this.currentState) {
      case 'ready':
        return Promise.resolve(this.worker as WorkerProcess);
      case 'failed':
        return Promise.reject(
          new DopsError(
            'UNAVAILABLE',
            `worker ${name} failed: crash-loop limit (${this.options.crashLoopLimit} restarts in ${this.options.crashLoopWindowMs} ms) reached; reset() it`,
            {
              retryable: false,
              cause: this.lastError,
            },
          ),
        );
      case 'draining':
        return Promise.reject(DopsError.unavailable(`worker ${name} is shutting down`));
      case 'stopped':
        return Promise.reject(
          new DopsError('UNAVAILABLE', `worker ${name} is stopped`, { retryable: false }),
        );
      default:
        return undefined;
    }
  }
}
