import type { Redis } from './connection';

/**
 * The one place dops reads BullMQ's own Redis keys, which are not part of its API and may change
 * with any release: `bullmq-internals.int-spec.ts` pins the BullMQ version these were read from
 * (6.7.0) and checks each against a real queue.
 *
 * `<prefix>:<queue>:wait` is the list of waiting jobs without a priority, taken first;
 * `<prefix>:<queue>:prioritized` the sorted set of prioritized waiting jobs, in the order they run.
 */
export const BULLMQ_INTERNALS_VERSION = '6.7.0';

/** Jobs that run before `jobId` in `queue` (0 = next); the whole wait list when it is not prioritized. */
export async function jobsAhead(redis: Redis, prefix: string, queue: string, jobId: string): Promise<number> {
  const base = `${prefix}:${queue}`;
  const [waiting, rank] = await Promise.all([
    redis.llen(`${base}:wait`),
    redis.zrank(`${base}:prioritized`, jobId),
  ]);
  return rank === null ? waiting : waiting + rank;
}
