import {
  status as GrpcStatus,
  type MethodDefinition,
  type sendUnaryData,
  type ServerErrorResponse,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceDefinition,
  type StatusObject,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { DopsError, ensureDopsError, grpcCodeOf, toGrpcStatus } from '@dops/errors';
import { authorize, rolesFor, type Authenticator, type Principal, type Role } from '@dops/security';
import type { Logger } from '@dops/telemetry';
import { openCallScope, type CallScope } from './call-context';
import { UndecodableRequest } from './request-decoding';
import type { Send, ServerStreamHandler, ServiceRegistration, UnaryHandler } from './service-handlers';

/** What the adapters need from the server: a logger and a register of calls in flight. */
export interface CallTracker {
  logger: Logger;
  authenticator: Authenticator;
  /** Called when a call starts; returns false when the server no longer takes calls. */
  begin(scope: CallScope): boolean;
  end(scope: CallScope): void;
}

type AnyMethod = MethodDefinition<unknown, unknown>;
type AnyHandler = (...args: unknown[]) => unknown;

/**
 * Turns async-style handlers into grpc-js handlers that log each call (method, code, duration,
 * peer), map thrown errors with toGrpcStatus, and give the handler a CallContext.
 * Throws for a missing handler or a client/bidi-streaming method.
 */
export function adaptService(
  registration: ServiceRegistration<ServiceDefinition>,
  tracker: CallTracker,
): UntypedServiceImplementation {
  const handlers = registration.implementation as unknown as Record<string, AnyHandler | undefined>;
  const adapted: UntypedServiceImplementation = {};
  for (const [name, method] of Object.entries(registration.definition as Record<string, AnyMethod>)) {
    const handler = handlers[name];
    if (typeof handler !== 'function') throw new Error(`${registration.serviceName}: no handler for ${name}`);
    if (method.requestStream) throw new Error(`${method.path}: client and bidi streaming are not supported`);
    const roles = rolesFor(registration.access, name);
    adapted[name] = method.responseStream
      ? adaptServerStream(method.path, roles, handler as ServerStreamHandler<unknown, unknown>, tracker)
      : adaptUnary(method.path, roles, handler as UnaryHandler<unknown, unknown>, tracker);
  }
  return adapted;
}

/**
 * The caller's principal once its credential and the method's roles check out; else the
 * UNAUTHENTICATED / PERMISSION_DENIED status to answer with (logged, the handler never runs).
 */
function admit(
  call: ServerUnaryCall<unknown, unknown> | ServerWritableStream<unknown, unknown>,
  path: string,
  roles: readonly Role[],
  tracker: CallTracker,
): Principal | Partial<StatusObject> {
  try {
    const principal = tracker.authenticator.authenticate(call.metadata, call.getAuthContext());
    authorize(principal, roles, path);
    return principal;
  } catch (err) {
    const error = ensureDopsError(err);
    tracker.logger.warn(
      { method: path, peer: call.getPeer(), code: GrpcStatus[grpcCodeOf(error.code)], reason: error.message },
      'rpc refused',
    );
    return toGrpcStatus(error);
  }
}

function isPrincipal(value: Principal | Partial<StatusObject>): value is Principal {
  return 'roles' in value;
}

function adaptUnary(
  path: string,
  roles: readonly Role[],
  handler: UnaryHandler<unknown, unknown>,
  tracker: CallTracker,
) {
  return (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>): void => {
    const principal = admit(call, path, roles, tracker);
    if (!isPrincipal(principal)) {
      callback(principal as ServerErrorResponse, null);
      return;
    }
    const scope = openCallScope(call, path, tracker.logger, principal);
    if (!tracker.begin(scope)) {
      scope.dispose();
      callback(toGrpcStatus(DopsError.unavailable('server is shutting down')) as ServerErrorResponse, null);
      return;
    }
    void (async () => {
      try {
        if (call.request instanceof UndecodableRequest) throw call.request.error;
        const response = await handler(call.request, scope.ctx);
        finish(scope, tracker);
        callback(null, response);
      } catch (err) {
        callback(finishWithError(scope, tracker, err) as ServerErrorResponse, null);
      }
    })();
  };
}

function adaptServerStream(
  path: string,
  roles: readonly Role[],
  handler: ServerStreamHandler<unknown, unknown>,
  tracker: CallTracker,
) {
  return (call: ServerWritableStream<unknown, unknown>): void => {
    const principal = admit(call, path, roles, tracker);
    if (!isPrincipal(principal)) {
      call.emit('error', principal);
      return;
    }
    const scope = openCallScope(call, path, tracker.logger, principal);
    if (!tracker.begin(scope)) {
      scope.dispose();
      call.emit('error', toGrpcStatus(DopsError.unavailable('server is shutting down')));
      return;
    }
    const { signal } = scope.ctx;
    const send: Send<unknown> = (message) => write(call, message, signal);
    void (async () => {
      try {
        if (call.request instanceof UndecodableRequest) throw call.request.error;
        const result = handler(call.request, scope.ctx, send);
        if (isAsyncIterable(result)) await pump(result, send, signal);
        else await result;
        finish(scope, tracker);
        call.end();
      } catch (err) {
        const status = finishWithError(scope, tracker, err);
        // After a cancel or deadline grpc-js has already closed the call; there is no one to tell.
        if (!signal.aborted) call.emit('error', status);
      }
    })();
  };
}

function write(
  call: ServerWritableStream<unknown, unknown>,
  message: unknown,
  signal: AbortSignal,
): Promise<void> {
  if (signal.aborted) return Promise.reject(signal.reason);
  if (call.write(message)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      call.removeListener('drain', onDrain);
      reject(signal.reason);
    };
    const onDrain = () => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    };
    call.once('drain', onDrain);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** Pulls the generator and sends each message; stops pulling (and calls `return()`) on abort. */
async function pump(source: AsyncIterable<unknown>, send: Send<unknown>, signal: AbortSignal): Promise<void> {
  const iterator = source[Symbol.asyncIterator]();
  let onAbort: () => void = () => undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
  aborted.catch(() => undefined);
  let done = false;
  try {
    for (;;) {
      const next = await Promise.race([iterator.next(), aborted]);
      if (next.done) {
        done = true;
        return;
      }
      await send(next.value);
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
    // A generator blocked in an await cannot be interrupted; return() runs its finally blocks once it yields.
    if (!done) void Promise.resolve(iterator.return?.()).catch(() => undefined);
  }
}

function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return typeof value === 'object' && value !== null && Symbol.asyncIterator in value;
}

function finish(scope: CallScope, tracker: CallTracker): void {
  scope.dispose();
  tracker.end(scope);
  tracker.logger.info({ ...callFields(scope), code: 'OK' }, 'rpc finished');
}

function finishWithError(scope: CallScope, tracker: CallTracker, err: unknown) {
  scope.dispose();
  tracker.end(scope);
  const { signal } = scope.ctx;
  // Once aborted, the abort's reason is the truth (the handler usually throws an AbortError).
  const error = signal.aborted ? (signal.reason as DopsError) : ensureDopsError(err);
  const code = grpcCodeOf(error.code);
  const fields = {
    ...callFields(scope),
    code: GrpcStatus[code],
    error_code: error.code,
    retryable: error.retryable,
  };
  if (error.code === 'INTERNAL') tracker.logger.error({ ...fields, err }, 'rpc failed');
  else tracker.logger.info({ ...fields, reason: error.message }, 'rpc failed');
  return toGrpcStatus(error);
}

function callFields(scope: CallScope) {
  return {
    method: scope.ctx.method,
    caller: scope.ctx.principal.id,
    peer: scope.ctx.peer,
    duration_ms: Math.round((performance.now() - scope.startedAt) * 100) / 100,
  };
}
