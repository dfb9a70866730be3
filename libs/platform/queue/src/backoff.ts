/**
 * Job option for `attempts` of a retryable stage: BullMQ's built-in exponential backoff
 * (`delayMs·2^(attempt-1)`) with jitter 0.5, so retries of many jobs that failed together spread
 * over the upper half of each interval.
 */
export function stageBackoff(delayMs = 1_000): { type: 'exponential'; delay: number; jitter: number } {
  return { type: 'exponential', delay: delayMs, jitter: 0.5 };
}
