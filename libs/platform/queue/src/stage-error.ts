import { UnrecoverableError } from 'bullmq';
import { DopsError, ensureDopsError, isErrorCodeName, type FieldViolation } from '@dops/errors';

/** The JSON a failed stage job's `failedReason` holds. */
export interface EncodedStageError {
  code: string;
  message: string;
  retryable: boolean;
  violations?: FieldViolation[];
}

/**
 * The Error a stage processor throws for `err`: its message is the JSON of EncodedStageError;
 * a non-retryable error is a BullMQ UnrecoverableError (no further attempts). Throws nothing.
 */
export function encodeStageError(err: unknown): Error {
  const e = ensureDopsError(err);
  const body: EncodedStageError = { code: e.code, message: e.message, retryable: e.retryable };
  if (e.violations.length > 0) body.violations = e.violations;
  const json = JSON.stringify(body);
  return e.retryable ? new Error(json) : new UnrecoverableError(json);
}

/**
 * The DopsError of a failed stage job's `failedReason`; a reason that is not our JSON (a BullMQ
 * stall or lock message, a parent failed because of its child) becomes INTERNAL with that text.
 */
export function decodeStageError(failedReason: string | undefined): DopsError {
  const text = failedReason ?? 'stage failed';
  try {
    const body = JSON.parse(text) as Partial<EncodedStageError>;
    if (body && isErrorCodeName(body.code)) {
      return new DopsError(body.code, String(body.message ?? ''), {
        retryable: body.retryable === true,
        violations: Array.isArray(body.violations) ? body.violations : [],
      });
    }
  } catch {
    // not ours: fall through
  }
  return new DopsError('INTERNAL', text, { retryable: false });
}
