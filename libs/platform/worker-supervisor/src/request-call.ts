import { DopsError, ensureDopsError, type FieldViolation } from '@dops/errors';
import type { ProgressParams } from './json-rpc';
import type { SupervisorLogger } from './logger';
import type { ResolvedSupervisorOptions } from './options';
import type { WorkerProcess } from './worker-process';

const MAX_TIMER_MS = 2 ** 31 - 1;

/** What a request needs from its supervisor. */
export interface RequestHost {
  options: Pick<ResolvedSupervisorOptions, 'requestTimeoutMs' | 'readyTimeoutMs' | 'cancelGraceMs'>;
  logger: SupervisorLogger;
  /** The ready child; rejects UNAVAILABLE when none is ready within `timeoutMs`. */
  readyWorker(timeoutMs: number, signal: AbortSignal): Promise<WorkerProcess>;
  /** Kills a child that ignored `$/cancelRequest`; the supervisor restarts it. */
  kill(worker: WorkerProcess, reason: DopsError): void;
}

/** Per-request options of WorkerSupervisor.request(). */
export interface RequestOptions {
  /** Milliseconds from this call, waiting for a ready worker included. Default: the supervisor's requestTimeoutMs. */
  timeoutMs?: number;
  /** Absolute deadline, Unix epoch ms; the sooner of this and timeoutMs wins and is sent as `_meta.deadline`. */
  deadline?: number;
  /** Aborting sends `$/cancelRequest`; the request fails CANCELLED. */
  signal?: AbortSignal;
  /** Called for each `$/progress` of this request; a throw is logged, not propagated. */
  onProgress?: (progress: ProgressParams) => void;
  /** W3C traceparent sent as `_meta.traceparent`. */
  traceparent?: string;
}

/** The first check of a request: every bad field at once, or undefined. Never throws. */
function validateRequest(method: string, params: unknown, options: RequestOptions): DopsError | undefined {
  const violations: FieldViolation[] = [];
  if (typeof method !== 'string' || method === '' || method.startsWith('$/'))
    violations.push({
      field: 'method',
      description: 'must be a non-empty method name, not a $/ notification',
    });
  if (typeof params !== 'object' || params === null || Array.isArray(params))
    violations.push({ field: 'params', description: 'must be an object' });
  if (options.timeoutMs !== undefined && !(options.timeoutMs > 0))
    violations.push({ field: 'timeoutMs', description: 'must be > 0 (Infinity for none)' });
  if (options.deadline !== undefined && !Number.isFinite(options.deadline))
    violations.push({ field: 'deadline', description: 'must be epoch milliseconds' });
  return DopsError.fromViolations(violations);
}

/**
 * One request's life: wait (bounded) for a ready worker, send it with `_meta`, and settle
 * exactly once. On abort or timeout it sends `$/cancelRequest` and fails CANCELLED /
 * DEADLINE_EXCEEDED once the worker replies or, after cancelGraceMs, once the worker has been
 * killed. Never throws; every failure is a rejected DopsError.
 */
export function sendRequest<T>(
  host: RequestHost,
  method: string,
  params: Record<string, unknown>,
  options: RequestOptions,
): Promise<T> {
  const invalid = validateRequest(method, params, options);
  if (invalid) return Promise.reject(invalid);
  const startedAt = Date.now();
  const timeoutMs = options.timeoutMs ?? host.options.requestTimeoutMs;
  const deadlineAt = Math.min(options.deadline ?? Infinity, startedAt + timeoutMs);
  const expiry =
    options.deadline !== undefined && options.deadline <= startedAt + timeoutMs
      ? 'its deadline'
      : `its ${timeoutMs} ms timeout`;
  const { signal } = options;
  if (signal?.aborted)
    return Promise.reject(
      new DopsError('CANCELLED', `${method} cancelled before it was sent`, { cause: signal.reason }),
    );
  if (deadlineAt <= startedAt)
    return Promise.reject(
      new DopsError('DEADLINE_EXCEEDED', `${method}: deadline passed before it was sent`),
    );

  return new Promise<T>((resolve, reject) => {
    const waiting = new AbortController();
    let sent: { worker: WorkerProcess; id: number; cancelling: boolean } | undefined;
    let graceTimer: NodeJS.Timeout | undefined;
    let settled = false;
    const finish = (settle: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(deadlineTimer);
      clearTimeout(graceTimer);
      signal?.removeEventListener('abort', onAbort);
      waiting.abort();
      settle();
    };
    const abortWith = (reason: DopsError): void => {
      if (settled) return;
      if (!sent) return finish(() => reject(reason));
      if (sent.cancelling) return;
      sent.cancelling = true;
      const { worker, id } = sent;
      worker.cancel(id, reason);
      graceTimer = setTimeout(() => {
        host.logger.warn(
          { method, id, cancelGraceMs: host.options.cancelGraceMs },
          'worker ignored $/cancelRequest; killing it',
        );
        host.kill(
          worker,
          DopsError.unavailable(
            `worker did not answer $/cancelRequest for ${method} within ${host.options.cancelGraceMs} ms`,
          ),
        );
      }, host.options.cancelGraceMs);
    };
    const onAbort = (): void =>
      abortWith(new DopsError('CANCELLED', `${method} cancelled by the caller`, { cause: signal?.reason }));
    const deadlineTimer = Number.isFinite(deadlineAt)
      ? setTimeout(
          () => abortWith(new DopsError('DEADLINE_EXCEEDED', `${method} exceeded ${expiry}`)),
          Math.min(deadlineAt - startedAt, MAX_TIMER_MS),
        )
      : undefined;
    signal?.addEventListener('abort', onAbort, { once: true });

    host.readyWorker(Math.min(host.options.readyTimeoutMs, deadlineAt - startedAt), waiting.signal).then(
      (worker) => {
        if (settled) return;
        const meta: Record<string, unknown> = {
          ...(params['_meta'] as Record<string, unknown> | undefined),
        };
        if (options.traceparent !== undefined) meta['traceparent'] = options.traceparent;
        if (Number.isFinite(deadlineAt)) meta['deadline'] = deadlineAt;
        const call = worker.call(method, { ...params, _meta: meta }, { onProgress: options.onProgress });
        sent = { worker, id: call.id, cancelling: false };
        call.result.then(
          (value) => finish(() => resolve(value as T)),
          (err: unknown) => finish(() => reject(ensureDopsError(err))),
        );
      },
      (err: unknown) => finish(() => reject(ensureDopsError(err))),
    );
  });
}
