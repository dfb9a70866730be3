import { DopsError } from '@dops/errors';
import type { Redis } from '@dops/queue';
import type { Keys } from './keys';

/** Longest idempotency key accepted: it is part of a Redis key. */
export const MAX_IDEMPOTENCY_KEY = 256;

/**
 * Idempotency keys per client: `SET NX` of the key to the id the first call creates, expiring
 * after `ttlMs`; the same key from another client is another key.
 */
export class IdempotencyKeys {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly ttlMs: number,
  ) {}

  /** INVALID_ARGUMENT naming `field` when `key` is longer than MAX_IDEMPOTENCY_KEY. */
  static check(key: string, field = 'idempotency_key'): void {
    if (key.length > MAX_IDEMPOTENCY_KEY)
      throw DopsError.invalidArgument(field, `must be at most ${MAX_IDEMPOTENCY_KEY} characters`);
  }

  /**
   * Claims `key` for `newId`: owner when this call set it (or there is no key), else the id the
   * first call of this client stored.
   */
  async claim(clientId: string, key: string, newId: string): Promise<{ owner: boolean; id: string }> {
    if (!key) return { owner: true, id: newId };
    const redisKey = this.keys.idempotency(clientId, key);
    if ((await this.redis.set(redisKey, newId, 'PX', this.ttlMs, 'NX')) === 'OK')
      return { owner: true, id: newId };
    const first = await this.redis.get(redisKey);
    // Expired between the two calls: claim it again.
    return first ? { owner: false, id: first } : this.claim(clientId, key, newId);
  }

  /** Gives a claimed key up (the call it guarded queued nothing). */
  async release(clientId: string, key: string): Promise<void> {
    if (key) await this.redis.del(this.keys.idempotency(clientId, key));
  }
}
