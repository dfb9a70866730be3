export { DopsError, ensureDopsError, fromWorkerError } from './dops-error';
export type { DopsErrorOptions, FieldViolation, WorkerErrorData } from './dops-error';
export {
  ERROR_CODES,
  RETRYABLE_BY_DEFAULT,
  fromProtoErrorCode,
  isErrorCodeName,
  toProtoErrorCode,
} from './error-code';
export type { ErrorCodeName } from './error-code';
export { ERROR_DOMAIN, fromGrpcError, grpcCodeOf, toGrpcStatus } from './grpc-status';
// Where error strings are bounded lives in telemetry, which must not load grpc-js before it is patched.
export { ECHO_LIMIT, truncateEcho } from '@dops/telemetry';
