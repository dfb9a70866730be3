import { DopsError, ensureDopsError } from '@dops/errors';

/** Exit codes scripts can branch on. */
export const EXIT = {
  ok: 0,
  /** The job failed or was cancelled, or an error without a better code. */
  failed: 1,
  /** Bad usage or INVALID_ARGUMENT / FAILED_PRECONDITION from a service. */
  usage: 2,
  notFound: 3,
  /** A service is down, overloaded or too slow (UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED). */
  unavailable: 4,
  interrupted: 130,
} as const;

/** The exit code for an error a command ended with. */
export function exitCodeOf(err: unknown): number {
  const e = ensureDopsError(err);
  switch (e.code) {
    case 'INVALID_ARGUMENT':
    case 'FAILED_PRECONDITION':
      return EXIT.usage;
    case 'NOT_FOUND':
      return EXIT.notFound;
    case 'UNAVAILABLE':
    case 'RESOURCE_EXHAUSTED':
    case 'DEADLINE_EXCEEDED':
      return EXIT.unavailable;
    default:
      return EXIT.failed;
  }
}

/** One line for stderr: code, message and each violated field. */
export function describeError(err: unknown): string {
  const e = err instanceof DopsError ? err : ensureDopsError(err);
  const fields = e.violations.map((v) => `\n  ${v.field}: ${v.description}`).join('');
  const hint = e.retryAfterMs !== undefined ? ` (retry after ${Math.ceil(e.retryAfterMs / 1000)} s)` : '';
  return `error ${e.code}: ${e.message}${hint}${fields}`;
}
