import {
  Metadata,
  type CallOptions,
  type ClientReadableStream,
  type ClientUnaryCall,
  type ServiceError,
} from '@grpc/grpc-js';
import { DopsError, fromGrpcError } from '@dops/errors';
import { defaultDeadlineMs } from './create-client';

export interface ClientCallOptions {
  /** Milliseconds from now; default: the client's `deadlineMs` for unary calls, none for streams. */
  deadlineMs?: number;
  /** Aborting cancels the call; it then rejects with CANCELLED. */
  signal?: AbortSignal;
  metadata?: Metadata;
}

type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: ServiceError | null, response: Res) => void,
) => ClientUnaryCall;

type StreamMethod<Req, Res> = (
  request: Req,
  metadata?: Metadata,
  options?: Partial<CallOptions>,
) => ClientReadableStream<Res>;

function isServiceError(err: unknown): err is ServiceError {
  return err instanceof Error && typeof (err as Partial<ServiceError>).code === 'number';
}

function toDopsError(err: unknown): DopsError {
  return isServiceError(err)
    ? fromGrpcError(err)
    : err instanceof DopsError
      ? err
      : DopsError.unavailable(String(err), err);
}

/**
 * Calls a unary method of a client from createClient: `await call(client.getDevice, { deviceId })`.
 * Rejects with the DopsError decoded from the status (fromGrpcError); default deadline from the client.
 */
export function call<Req, Res>(
  method: UnaryMethod<Req, Res>,
  request: Req,
  options: ClientCallOptions = {},
): Promise<Res> {
  const deadlineMs = options.deadlineMs ?? defaultDeadlineMs(method);
  const signal = options.signal;
  if (signal?.aborted) return Promise.reject(new DopsError('CANCELLED', 'call aborted before it started'));
  return new Promise<Res>((resolve, reject) => {
    const onAbort = () => pending.cancel();
    const pending = method(
      request,
      options.metadata ?? new Metadata(),
      { deadline: Date.now() + deadlineMs },
      (err, response) => {
        signal?.removeEventListener('abort', onAbort);
        if (err) reject(fromGrpcError(err));
        else resolve(response);
      },
    );
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Opens a server stream as an async iterable: `for await (const m of stream(client.watchDevices, {}))`.
 * Breaking out of the loop or aborting `signal` cancels the call; a failure throws a DopsError.
 */
export async function* stream<Req, Res>(
  method: StreamMethod<Req, Res>,
  request: Req,
  options: ClientCallOptions = {},
): AsyncGenerator<Res, void, undefined> {
  const callOptions: Partial<CallOptions> =
    options.deadlineMs === undefined ? {} : { deadline: Date.now() + options.deadlineMs };
  const call = method(request, options.metadata ?? new Metadata(), callOptions);
  const signal = options.signal;
  const onAbort = () => call.cancel();
  if (signal?.aborted) call.cancel();
  signal?.addEventListener('abort', onAbort, { once: true });
  let finished = false;
  try {
    for await (const message of call as AsyncIterable<Res>) yield message;
    finished = true;
  } catch (err) {
    finished = true;
    throw toDopsError(err);
  } finally {
    signal?.removeEventListener('abort', onAbort);
    if (!finished) call.cancel();
  }
}
