import { ErrorCodeName, isErrorCodeName, RETRYABLE_BY_DEFAULT } from './error-code';

/** One violated field of a request: where and why. */
export interface FieldViolation {
  field: string;
  description: string;
}

export interface DopsErrorOptions {
  /** Defaults to whether the code is retryable by default (UNAVAILABLE, OUT_OF_MEMORY, ...). */
  retryable?: boolean;
  /** Field violations, carried as google.rpc.BadRequest over gRPC. */
  violations?: FieldViolation[];
  /** String metadata, carried as google.rpc.ErrorInfo.metadata over gRPC. */
  metadata?: Record<string, string>;
  /** Milliseconds after which a retry may succeed (google.rpc.RetryInfo). */
  retryAfterMs?: number;
  cause?: unknown;
}

/**
 * The one error type that crosses every wire (gRPC, worker protocol, queue). Services throw it;
 * the converters in this package turn it into a gRPC status, and back.
 */
export class DopsError extends Error {
  override readonly name = 'DopsError';
  readonly code: ErrorCodeName;
  readonly retryable: boolean;
  readonly violations: FieldViolation[];
  readonly metadata: Record<string, string>;
  readonly retryAfterMs?: number;

  constructor(code: ErrorCodeName, message: string, options: DopsErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryable = options.retryable ?? RETRYABLE_BY_DEFAULT.has(code);
    this.violations = options.violations ?? [];
    this.metadata = options.metadata ?? {};
    this.retryAfterMs = options.retryAfterMs;
  }

  /** INVALID_ARGUMENT naming one field and the reason. */
  static invalidArgument(field: string, description: string): DopsError {
    return new DopsError('INVALID_ARGUMENT', `${field}: ${description}`, {
      violations: [{ field, description }],
    });
  }

  /** INVALID_ARGUMENT for several fields at once; throws nothing, returns undefined when `violations` is empty. */
  static fromViolations(violations: FieldViolation[]): DopsError | undefined {
    if (violations.length === 0) return undefined;
    const message = violations.map((v) => `${v.field}: ${v.description}`).join('; ');
    return new DopsError('INVALID_ARGUMENT', message, { violations });
  }

  static notFound(what: string, id: string): DopsError {
    return new DopsError('NOT_FOUND', `${what} '${id}' not found`, { metadata: { [what]: id } });
  }

  static unavailable(message: string, cause?: unknown): DopsError {
    return new DopsError('UNAVAILABLE', message, { retryable: true, cause });
  }
}

/** Wraps anything thrown into a DopsError; non-DopsErrors become INTERNAL (not retryable). */
export function ensureDopsError(err: unknown): DopsError {
  if (err instanceof DopsError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new DopsError('INTERNAL', message, { retryable: false, cause: err });
}

/** Shape of `error.data` in a worker's JSON-RPC reply (docs/worker-protocol.md). */
export interface WorkerErrorData {
  code: ErrorCodeName;
  retryable: boolean;
  fatal: boolean;
  details?: Record<string, unknown>;
}

/**
 * Turns a worker's JSON-RPC error into a DopsError; an unknown code becomes INTERNAL.
 * `details.field` (with `details.reason`) becomes a field violation.
 */
export function fromWorkerError(error: { message?: unknown; data?: unknown }): DopsError {
  const data = (
    typeof error.data === 'object' && error.data !== null ? error.data : {}
  ) as Partial<WorkerErrorData>;
  const code = isErrorCodeName(data.code) ? data.code : 'INTERNAL';
  const message = typeof error.message === 'string' ? error.message : 'worker error';
  const details = (data.details ?? {}) as Record<string, unknown>;
  const violations =
    typeof details['field'] === 'string'
      ? [{ field: details['field'] as string, description: String(details['reason'] ?? message) }]
      : [];
  const metadata: Record<string, string> = { source: 'worker' };
  if (data.fatal) metadata['fatal'] = 'true';
  return new DopsError(code, message, {
    retryable: typeof data.retryable === 'boolean' ? data.retryable : undefined,
    violations,
    metadata,
  });
}
