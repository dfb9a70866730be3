import { DopsError } from '@dops/errors';
import { WRITING_PHASE, type ProgressParams, type WorkerSupervisor } from '@dops/worker-supervisor';
import { processMetrics } from '@dops/metrics';

export interface LaneOptions {
  /** Most requests one worker call may carry (dynamic batching, for requests with a batching); 1 = none. */
  maxBatch: number;
  /** How long an idle lane waits for more compatible requests before it sends a batch. */
  batchWaitMs: number;
  /** Longest time a worker call may take when the caller set no deadline. */
  maxRequestMs: number;
  /**
   * A promise while requests must not be sent yet (e.g. the models a restarted worker held are
   * being loaded again), undefined when they may go; exclusive work is not held back by it.
   */
  ready?: () => Promise<unknown> | undefined;
}

export interface LaneCall {
  /** Aborting drops a waiting request (the worker never sees it) or stops a running one. */
  signal?: AbortSignal;
  deadline?: Date;
  /** Longest run without a deadline; default the lane's maxRequestMs. */
  timeoutMs?: number;
  traceparent?: string;
  onProgress?: (progress: ProgressParams) => void;
}

/** How requests of one method join one worker call, and how its answer is shared out. */
export interface LaneBatching<R> {
  /** Requests with the same key may run together; undefined = this one runs alone. */
  key: string | undefined;
  /** The params of one call for several requests (in order). */
  combine(members: readonly Record<string, unknown>[]): Record<string, unknown>;
  /** Member `member`'s share of the call's raw answer (`size` members in the call). */
  split(raw: unknown, member: number, size: number): R;
}

interface RequestTask {
  kind: 'request';
  method: string;
  params: Record<string, unknown>;
  batching?: LaneBatching<unknown>;
  key: string | undefined;
  call: LaneCall;
  resolve: (r: unknown) => void;
  reject: (e: unknown) => void;
  settled: boolean;
}

interface ExclusiveTask {
  kind: 'exclusive';
  run: () => Promise<unknown>;
  resolve: (r: unknown) => void;
  reject: (e: unknown) => void;
  settled: boolean;
}

type Task = RequestTask | ExclusiveTask;

/** Worker calls at most outstanding at once: one writing its files, one in its device work. */
const MAX_OUTSTANDING = 2;

/**
 * The only sender of work to one device's worker (what inference and postprocessing embed per
 * device): requests wait here, not inside the worker, and go one at a time — requests with a
 * batching joined with compatible waiting ones into one call (up to `maxBatch`; an idle lane
 * waits `batchWaitMs` for company), and exclusive work (model loads and unloads) between them. A
 * request cancelled while it waits is dropped without touching the worker; a member of a running
 * batch that is cancelled ends at once and its share is discarded, the others go on (the call
 * itself is cancelled when no member is left).
 *
 * "One at a time" is one call in its device work: a call that reports `$/progress {phase:
 * "writing"}` (only its PNG writes remain; the worker's execution thread is free) releases the
 * lane, and the next batch goes while its reply is still to come — at most two calls outstanding
 * at the worker, one writing, one computing. That frame is the lane's signal, not the callers'
 * progress (its step was already reported), so it is not passed on. Exclusive work waits until
 * every outstanding call replied: a load or unload then never overlaps a call of any phase, which
 * keeps "between generations" true for memory accounting and the worker alike.
 */
export class DeviceLane {
  private readonly queue: Task[] = [];
  private busy = false;
  private wake?: () => void;
  /** Calls sent and not yet replied (each promise settles with the reply, never rejects). */
  private readonly outstanding = new Set<Promise<void>>();

  constructor(
    private readonly supervisor: () => WorkerSupervisor,
    private readonly options: LaneOptions,
  ) {}

  /** Requests waiting (not yet sent). */
  get waiting(): number {
    return this.queue.length;
  }

  /** `method` with `params` on the worker, when its turn comes (joined into a batch when `batching` allows). */
  request<R>(
    method: string,
    params: Record<string, unknown>,
    call: LaneCall = {},
    batching?: LaneBatching<R>,
  ): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      const task: RequestTask = {
        kind: 'request',
        method,
        params,
        batching: batching as LaneBatching<unknown> | undefined,
        key:
          this.options.maxBatch > 1 && batching?.key !== undefined
            ? `${method}\u0000${batching.key}`
            : undefined,
        call,
        resolve: resolve as (r: unknown) => void,
        reject,
        settled: false,
      };
      if (call.signal?.aborted) return reject(call.signal.reason);
      call.signal?.addEventListener('abort', () => this.dropIfWaiting(task, call.signal!.reason), {
        once: true,
      });
      this.queue.push(task);
      this.wake?.();
      void this.pump();
    });
  }

  /**
   * Runs `run` when no generation runs on the device. With `waitMs`, refuses with
   * FAILED_PRECONDITION (saying `what`) when the device is still busy after it.
   */
  exclusive<T>(
    run: () => Promise<T>,
    options: { waitMs?: number; what?: string; urgent?: boolean } = {},
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const task: ExclusiveTask = {
        kind: 'exclusive',
        run,
        resolve: resolve as (r: unknown) => void,
        reject,
        settled: false,
      };
      // Urgent work (loading back what a restarted worker held) goes before every waiting request.
      if (options.urgent) this.queue.unshift(task);
      else this.queue.push(task);
      this.wake?.();
      if (options.waitMs !== undefined) {
        const timer = setTimeout(
          () =>
            this.dropIfWaiting(
              task,
              new DopsError(
                'FAILED_PRECONDITION',
                `${options.what ?? 'the request'} waited ${options.waitMs} ms for the device's running work; try again later`,
                { retryable: true },
              ),
            ),
          options.waitMs,
        );
        const clear = () => clearTimeout(timer);
        task.resolve = (r) => (clear(), resolve(r as T));
        task.reject = (e) => (clear(), reject(e));
      }
      void this.pump();
    });
  }

  private dropIfWaiting(task: Task, reason: unknown): void {
    const at = this.queue.indexOf(task);
    if (at < 0) return;
    this.queue.splice(at, 1);
    task.settled = true;
    task.reject(reason);
  }

  private async pump(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      for (let task = this.queue[0]; task; task = this.queue[0]) {
        const notYet = task.kind === 'request' ? this.options.ready?.() : undefined;
        if (notYet) {
          // Wait for the gate, or for new work (an urgent load may have to run first).
          await Promise.race([
            notYet.catch(() => undefined),
            new Promise<void>((resolve) => (this.wake = resolve)),
          ]);
          this.wake = undefined;
          continue;
        }
        if (task.kind === 'exclusive') {
          if (this.outstanding.size > 0) {
            // Still in the queue meanwhile, so its waitMs bound can drop it.
            await Promise.all(this.outstanding);
            continue;
          }
          this.queue.shift();
          await task.run().then(task.resolve, task.reject);
          continue;
        }
        if (this.outstanding.size >= MAX_OUTSTANDING) {
          await Promise.race(this.outstanding);
          continue;
        }
        const batch = await this.collect(task);
        await this.send(batch);
      }
    } finally {
      this.busy = false;
    }
  }

  /** The head generation and the waiting ones of its key before the next exclusive task, up to maxBatch. */
  private async collect(head: RequestTask): Promise<RequestTask[]> {
    const take = () => {
      const batch: RequestTask[] = [];
      for (const t of this.queue) {
        if (t.kind === 'exclusive') break;
        if (t === head || (head.key !== undefined && t.key === head.key)) batch.push(t);
        if (batch.length >= this.options.maxBatch) break;
      }
      return batch;
    };
    let batch = take();
    if (head.key !== undefined && batch.length < this.options.maxBatch && this.options.batchWaitMs > 0) {
      const until = Date.now() + this.options.batchWaitMs;
      while (batch.length < this.options.maxBatch && Date.now() < until) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, until - Date.now());
          this.wake = () => (clearTimeout(timer), resolve());
        });
        this.wake = undefined;
        // The head was cancelled meanwhile: the next one leads.
        if (!this.queue.includes(head)) return [];
        batch = take();
      }
    }
    for (const t of batch) this.queue.splice(this.queue.indexOf(t), 1);
    return batch.filter((t) => !t.settled);
  }

  /**
   * Sends `batch` as one worker call; resolves once the lane may send the next one: when the call
   * reports its writing phase, or settles. The call's members settle when its reply arrives.
   */
  private send(batch: RequestTask[]): Promise<void> {
    if (batch.length === 0) return Promise.resolve();
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const replied = this.call(batch, release)
      .catch(() => undefined) // call() settles its members itself; this only keeps the set's promises fulfilled
      .finally(release);
    this.outstanding.add(replied);
    void replied.finally(() => this.outstanding.delete(replied));
    return released;
  }

  /** One worker call for `batch`, its answer shared out; `writing` when only its writes remain. Never rejects. */
  private async call(batch: RequestTask[], writing: () => void): Promise<void> {
    const controller = new AbortController();
    const live = new Set(batch);
    const onCancel = (task: RequestTask) => () => {
      if (task.settled) return;
      task.settled = true;
      live.delete(task);
      task.reject(task.call.signal!.reason);
      if (live.size === 0) controller.abort(task.call.signal!.reason);
    };
    const listeners = batch.map((task) => {
      const listener = onCancel(task);
      task.call.signal?.addEventListener('abort', listener, { once: true });
      return listener;
    });
    const deadlines = batch
      .map((t) => t.call.deadline?.getTime())
      .filter((d): d is number => d !== undefined);
    try {
      const head = batch[0]!;
      if (head.batching) processMetrics().batchSize.observe({ method: head.method }, batch.length);
      const params =
        batch.length > 1 && head.batching ? head.batching.combine(batch.map((t) => t.params)) : head.params;
      const raw = await this.supervisor().request<unknown>(head.method, params, {
        signal: controller.signal,
        deadline: deadlines.length === batch.length ? Math.max(...deadlines) : undefined,
        timeoutMs: Math.max(...batch.map((t) => t.call.timeoutMs ?? this.options.maxRequestMs)),
        traceparent: batch[0]!.call.traceparent,
        onProgress: (p) => {
          if (p.phase === WRITING_PHASE) return writing();
          for (const t of live) t.call.onProgress?.(p);
        },
      });
      batch.forEach((task, member) => {
        if (task.settled) return;
        task.settled = true;
        task.resolve(task.batching ? task.batching.split(raw, member, batch.length) : raw);
      });
    } catch (err) {
      for (const task of batch) {
        if (task.settled) continue;
        task.settled = true;
        task.reject(err);
      }
    } finally {
      batch.forEach((task, i) => task.call.signal?.removeEventListener('abort', listeners[i]!));
    }
  }
}
