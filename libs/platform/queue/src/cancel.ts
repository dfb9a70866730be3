import type { Redis } from 'ioredis';
import { DopsError } from '@dops/errors';
import { createRedis } from './connection';
import { cancelChannel, cancelKey } from './names';

/** How long a cancel mark is kept: longer than any job waits in a queue. */
const CANCEL_TTL_S = 86_400;

/**
 * Marks `jobId` cancelled (`SET <prefix>:cancel:<jobId> 1 EX 86400`) and tells every stage
 * worker (`PUBLISH <prefix>:cancel <jobId>`). Rejects only when Redis does.
 */
export async function publishCancel(redis: Redis, prefix: string, jobId: string): Promise<void> {
  await redis.set(cancelKey(prefix, jobId), '1', 'EX', CANCEL_TTL_S);
  await redis.publish(cancelChannel(prefix), jobId);
}

/** Removes the cancel mark (a retried job runs again). */
export async function clearCancel(redis: Redis, prefix: string, jobId: string): Promise<void> {
  await redis.del(cancelKey(prefix, jobId));
}

/** True when `jobId` was cancelled. */
export async function isCancelled(redis: Redis, prefix: string, jobId: string): Promise<boolean> {
  return (await redis.exists(cancelKey(prefix, jobId))) === 1;
}

/** The error a cancelled stage fails with (not retryable). */
export function cancelledError(jobId: string): DopsError {
  return new DopsError('CANCELLED', `job '${jobId}' was cancelled`, { retryable: false });
}

/** A running job's registration with a CancelListener. */
export interface CancelRegistration {
  /** Aborted (reason: CANCELLED DopsError) when the job is cancelled. */
  signal: AbortSignal;
  /** Forget the job; call when it settles. */
  release(): void;
}

/**
 * Subscribes to the cancel channel on its own connection and aborts the AbortControllers of the
 * jobs registered with it; only the named job is touched. `start()` rejects when Redis cannot be
 * reached; after a reconnect ioredis subscribes again by itself.
 */
export class CancelListener {
  private readonly subscriber: Redis;
  private readonly controllers = new Map<string, Set<AbortController>>();

  constructor(
    redisUrl: string,
    private readonly prefix: string,
  ) {
    this.subscriber = createRedis(redisUrl);
    this.subscriber.on('message', (channel: string, jobId: string) => {
      if (channel === cancelChannel(this.prefix)) this.abort(jobId);
    });
  }

  async start(): Promise<void> {
    await this.subscriber.subscribe(cancelChannel(this.prefix));
  }

  /** A signal that aborts when `jobId` is cancelled. */
  register(jobId: string): CancelRegistration {
    const controller = new AbortController();
    const set = this.controllers.get(jobId) ?? new Set();
    set.add(controller);
    this.controllers.set(jobId, set);
    return {
      signal: controller.signal,
      release: () => {
        set.delete(controller);
        if (set.size === 0 && this.controllers.get(jobId) === set) this.controllers.delete(jobId);
      },
    };
  }

  /** Aborts the registered controllers of `jobId` (also what a channel message does). */
  abort(jobId: string): void {
    for (const controller of this.controllers.get(jobId) ?? []) controller.abort(cancelledError(jobId));
  }

  async close(): Promise<void> {
    this.subscriber.disconnect();
  }
}
