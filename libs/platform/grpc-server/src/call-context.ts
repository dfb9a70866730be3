import type { Metadata, ServerUnaryCall, ServerWritableStream } from '@grpc/grpc-js';
import { DopsError } from '@dops/errors';
import type { Principal } from '@dops/security';
import { currentTraceparent, type Logger } from '@dops/telemetry';

/** What a handler knows about the call it serves, beside the request. */
export interface CallContext {
  /** Full method path, e.g. `/dops.device.v1.DeviceService/GetDevice`. */
  readonly method: string;
  /** The client's deadline; undefined when it set none. */
  readonly deadline: Date | undefined;
  /**
   * Aborted when the client cancels, the deadline passes, or a shutdown's grace period ends;
   * `signal.reason` is a DopsError (CANCELLED, DEADLINE_EXCEEDED or UNAVAILABLE) a handler may rethrow.
   */
  readonly signal: AbortSignal;
  /** W3C traceparent of the call's server span (or the caller's header when tracing is off). */
  readonly traceparent: string | undefined;
  /** Request metadata (headers). */
  readonly metadata: Metadata;
  /** Who is calling, proven by the call's credential; the server has checked the method's roles. */
  readonly principal: Principal;
  /** Client address, e.g. `ipv4:127.0.0.1:53412`. */
  readonly peer: string;
  /** The server's logger bound to this method; lines carry the call's trace ids. */
  readonly logger: Logger;
}

/** A CallContext with the means to end it: the server side of one call. */
export interface CallScope {
  readonly ctx: CallContext;
  readonly startedAt: number;
  /** Aborts ctx.signal with `reason` (no-op once aborted). */
  abort(reason: DopsError): void;
  /** Clears the deadline timer and listeners; call exactly once when the call is over. */
  dispose(): void;
}

// A deadline timer can fire a hair before grpc-js's own; within this slack a "cancel" is the deadline.
const DEADLINE_SLACK_MS = 20;

function toDate(deadline: Date | number): Date | undefined {
  if (deadline instanceof Date) return deadline;
  return Number.isFinite(deadline) ? new Date(deadline) : undefined;
}

/** Builds the context of one incoming call and wires its AbortSignal to cancel and deadline. */
export function openCallScope(
  call: ServerUnaryCall<unknown, unknown> | ServerWritableStream<unknown, unknown>,
  method: string,
  logger: Logger,
  principal: Principal,
): CallScope {
  const controller = new AbortController();
  const deadline = toDate(call.getDeadline());
  const abort = (reason: DopsError) => {
    if (!controller.signal.aborted) controller.abort(reason);
  };
  const onDeadline = () =>
    abort(new DopsError('DEADLINE_EXCEEDED', `deadline of ${method} exceeded`, { retryable: true }));
  const onCancelled = () => {
    if (deadline && Date.now() >= deadline.getTime() - DEADLINE_SLACK_MS) onDeadline();
    else abort(new DopsError('CANCELLED', `${method} cancelled by the client`, { retryable: false }));
  };
  call.on('cancelled', onCancelled);
  let timer: NodeJS.Timeout | undefined;
  if (deadline) {
    const remaining = deadline.getTime() - Date.now();
    if (remaining <= 0) onDeadline();
    // setTimeout's limit is 2^31-1 ms; a deadline further out than ~24 days is no deadline here.
    else if (remaining < 2 ** 31 - 1) timer = setTimeout(onDeadline, remaining);
  }
  if (call.cancelled) onCancelled();

  const traceparent = currentTraceparent() ?? headerValue(call.metadata, 'traceparent');
  const ctx: CallContext = {
    method,
    deadline,
    signal: controller.signal,
    traceparent,
    metadata: call.metadata,
    principal,
    peer: call.getPeer(),
    logger: logger.child({ method, caller: principal.id }),
  };
  return {
    ctx,
    startedAt: performance.now(),
    abort,
    dispose: () => {
      if (timer) clearTimeout(timer);
      call.removeListener('cancelled', onCancelled);
    },
  };
}

function headerValue(metadata: Metadata, key: string): string | undefined {
  const value = metadata.get(key)[0];
  return typeof value === 'string' ? value : undefined;
}
