import type { BackoffStrategy } from 'bullmq';

/** The custom backoff type of every retryable stage (`job.opts.backoff.type`). */
export const BACKOFF_TYPE = 'dops-jitter';

/** Job option for `attempts` with exponential backoff and jitter starting at `delayMs` (default 1 s). */
export function stageBackoff(delayMs = 1_000): { type: string; delay: number } {
  return { type: BACKOFF_TYPE, delay: delayMs };
}

/**
 * Exponential backoff with "equal jitter": half of `delay·2^(attempt-1)` fixed, half random, so
 * retries of many jobs failed together spread out. `random` defaults to Math.random (tests pin it).
 */
export function jitteredDelay(
  attemptsMade: number,
  baseMs: number,
  random: () => number = Math.random,
): number {
  const ceiling = baseMs * 2 ** Math.max(0, attemptsMade - 1);
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/**
 * The Worker `settings.backoffStrategy` that implements `dops-jitter`; any other custom type
 * fails the job (-1), as BullMQ does for an unknown one.
 */
export const dopsBackoffStrategy: BackoffStrategy = (attemptsMade, type, _err, job) => {
  if (type !== BACKOFF_TYPE) return -1;
  const backoff = job?.opts?.backoff;
  const base = typeof backoff === 'object' && backoff?.delay ? backoff.delay : 1_000;
  return jitteredDelay(attemptsMade, base);
};
