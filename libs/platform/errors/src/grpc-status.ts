import { Metadata, status as GrpcCode, type ServiceError, type StatusObject } from '@grpc/grpc-js';
import { Any, googleRpc, RpcStatus } from '@dops/proto';
import { DopsError, ensureDopsError } from './dops-error';
import { ErrorCodeName, isErrorCodeName } from './error-code';
import { truncateEcho } from '@dops/telemetry';

/** google.rpc.ErrorInfo.domain of every error this system raises. */
export const ERROR_DOMAIN = 'dops.dev';
const DETAILS_KEY = 'grpc-status-details-bin';
const TYPE_PREFIX = 'type.googleapis.com/';

const GRPC_CODE: Record<ErrorCodeName, GrpcCode> = {
  INVALID_ARGUMENT: GrpcCode.INVALID_ARGUMENT,
  NOT_FOUND: GrpcCode.NOT_FOUND,
  ALREADY_EXISTS: GrpcCode.ALREADY_EXISTS,
  FAILED_PRECONDITION: GrpcCode.FAILED_PRECONDITION,
  OUT_OF_MEMORY: GrpcCode.RESOURCE_EXHAUSTED,
  RESOURCE_EXHAUSTED: GrpcCode.RESOURCE_EXHAUSTED,
  CANCELLED: GrpcCode.CANCELLED,
  DEADLINE_EXCEEDED: GrpcCode.DEADLINE_EXCEEDED,
  UNAVAILABLE: GrpcCode.UNAVAILABLE,
  UNSUPPORTED: GrpcCode.UNIMPLEMENTED,
  INTERNAL: GrpcCode.INTERNAL,
  UNAUTHENTICATED: GrpcCode.UNAUTHENTICATED,
  PERMISSION_DENIED: GrpcCode.PERMISSION_DENIED,
};

/** Codes for a gRPC status that carries no ErrorInfo (a peer outside this system). */
const FROM_GRPC_CODE: Partial<Record<GrpcCode, ErrorCodeName>> = {
  [GrpcCode.INVALID_ARGUMENT]: 'INVALID_ARGUMENT',
  [GrpcCode.NOT_FOUND]: 'NOT_FOUND',
  [GrpcCode.ALREADY_EXISTS]: 'ALREADY_EXISTS',
  [GrpcCode.FAILED_PRECONDITION]: 'FAILED_PRECONDITION',
  [GrpcCode.RESOURCE_EXHAUSTED]: 'RESOURCE_EXHAUSTED',
  [GrpcCode.CANCELLED]: 'CANCELLED',
  [GrpcCode.DEADLINE_EXCEEDED]: 'DEADLINE_EXCEEDED',
  [GrpcCode.UNAVAILABLE]: 'UNAVAILABLE',
  [GrpcCode.UNIMPLEMENTED]: 'UNSUPPORTED',
  [GrpcCode.UNAUTHENTICATED]: 'UNAUTHENTICATED',
  [GrpcCode.PERMISSION_DENIED]: 'PERMISSION_DENIED',
};

/** The gRPC status code a DopsError code travels as. */
export function grpcCodeOf(code: ErrorCodeName): GrpcCode {
  return GRPC_CODE[code];
}

function pack(typeName: string, value: Uint8Array): Any {
  return { typeUrl: TYPE_PREFIX + typeName, value: Buffer.from(value) };
}

function truncateValues(values: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(values).map(([k, v]) => [truncateEcho(k), truncateEcho(v)]));
}

/**
 * A gRPC status for any thrown value: the code mapped from the DopsError code, and
 * `grpc-status-details-bin` holding a google.rpc.Status with ErrorInfo (reason = the string
 * code, metadata.retryable), BadRequest when there are field violations, RetryInfo when set.
 * Every string is cut to ECHO_LIMIT bytes (truncateEcho).
 */
export function toGrpcStatus(err: unknown): Partial<StatusObject> {
  const e = ensureDopsError(err);
  const code = grpcCodeOf(e.code);
  const details: Any[] = [
    pack(
      'google.rpc.ErrorInfo',
      googleRpc.ErrorInfo.encode({
        reason: e.code,
        domain: ERROR_DOMAIN,
        metadata: { ...truncateValues(e.metadata), retryable: String(e.retryable) },
      }).finish(),
    ),
  ];
  if (e.violations.length > 0) {
    details.push(
      pack(
        'google.rpc.BadRequest',
        googleRpc.BadRequest.encode({
          fieldViolations: e.violations.map((v) => ({
            field: truncateEcho(v.field),
            description: truncateEcho(v.description),
            reason: '',
          })),
        }).finish(),
      ),
    );
  }
  if (e.retryAfterMs !== undefined) {
    const seconds = Math.floor(e.retryAfterMs / 1000);
    details.push(
      pack(
        'google.rpc.RetryInfo',
        googleRpc.RetryInfo.encode({
          retryDelay: { seconds, nanos: (e.retryAfterMs - seconds * 1000) * 1e6 },
        }).finish(),
      ),
    );
  }
  // A caller's strings (ids, paths) come back in messages: bounded so an error cannot be an amplifier.
  const message = truncateEcho(e.message);
  const metadata = new Metadata();
  metadata.set(DETAILS_KEY, Buffer.from(RpcStatus.encode({ code, message, details }).finish()));
  return { code, details: message, metadata };
}

/**
 * The DopsError a client sees for a failed call: decoded from `grpc-status-details-bin` when
 * present, else mapped from the bare status code (unknown codes → INTERNAL / UNAVAILABLE).
 */
export function fromGrpcError(err: ServiceError): DopsError {
  const raw = err.metadata?.get(DETAILS_KEY)?.[0];
  if (raw instanceof Buffer) {
    const status = RpcStatus.decode(raw);
    let code: ErrorCodeName | undefined;
    let retryable: boolean | undefined;
    let metadata: Record<string, string> = {};
    const violations: { field: string; description: string }[] = [];
    let retryAfterMs: number | undefined;
    for (const any of status.details) {
      const type = any.typeUrl.slice(any.typeUrl.lastIndexOf('/') + 1);
      if (type === 'google.rpc.ErrorInfo') {
        const info = googleRpc.ErrorInfo.decode(any.value);
        if (isErrorCodeName(info.reason)) code = info.reason;
        const { retryable: flag, ...rest } = info.metadata;
        retryable = flag === undefined ? undefined : flag === 'true';
        metadata = rest;
      } else if (type === 'google.rpc.BadRequest') {
        for (const v of googleRpc.BadRequest.decode(any.value).fieldViolations) {
          violations.push({ field: v.field, description: v.description });
        }
      } else if (type === 'google.rpc.RetryInfo') {
        const d = googleRpc.RetryInfo.decode(any.value).retryDelay;
        if (d) retryAfterMs = d.seconds * 1000 + Math.round(d.nanos / 1e6);
      }
    }
    if (code)
      return new DopsError(code, status.message, {
        retryable,
        metadata,
        violations,
        retryAfterMs,
        cause: err,
      });
  }
  const code = FROM_GRPC_CODE[err.code] ?? (err.code === GrpcCode.UNKNOWN ? 'INTERNAL' : 'INTERNAL');
  return new DopsError(code, err.details || err.message, { cause: err });
}
