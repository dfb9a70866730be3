import { commonV1 } from '@dops/proto';

/** The string codes of DESIGN §3: `dops.common.v1.ErrorCode` names without their prefix. */
export const ERROR_CODES = [
  'INVALID_ARGUMENT',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'FAILED_PRECONDITION',
  'OUT_OF_MEMORY',
  'RESOURCE_EXHAUSTED',
  'CANCELLED',
  'DEADLINE_EXCEEDED',
  'UNAVAILABLE',
  'UNSUPPORTED',
  'INTERNAL',
  'UNAUTHENTICATED',
  'PERMISSION_DENIED',
] as const;

export type ErrorCodeName = (typeof ERROR_CODES)[number];

const PREFIX = 'ERROR_CODE_';

/** True when `value` is one of the table's codes (no prefix). */
export function isErrorCodeName(value: unknown): value is ErrorCodeName {
  return typeof value === 'string' && (ERROR_CODES as readonly string[]).includes(value);
}

/** The proto enum value for a code name. */
export function toProtoErrorCode(code: ErrorCodeName): commonV1.ErrorCode {
  return `${PREFIX}${code}` as commonV1.ErrorCode;
}

/** The code name for a proto enum value; `INTERNAL` for UNSPECIFIED/UNRECOGNIZED. */
export function fromProtoErrorCode(code: commonV1.ErrorCode): ErrorCodeName {
  const name = String(code).startsWith(PREFIX) ? String(code).slice(PREFIX.length) : String(code);
  return isErrorCodeName(name) ? name : 'INTERNAL';
}

/**
 * Codes a caller may retry by default (the error's own flag wins where it says otherwise).
 * DEADLINE_EXCEEDED is not among them: the caller's time is spent (the worker agrees).
 */
export const RETRYABLE_BY_DEFAULT: ReadonlySet<ErrorCodeName> = new Set([
  'OUT_OF_MEMORY',
  'RESOURCE_EXHAUSTED',
  'UNAVAILABLE',
]);
