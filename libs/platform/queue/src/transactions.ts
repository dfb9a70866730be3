import type { Redis } from 'ioredis';

/**
 * Optimistic Redis transactions (WATCH → read → MULTI/EXEC) that really are optimistic.
 *
 * WATCH belongs to a connection, not to a caller: on one connection shared by concurrent async
 * callers, one caller's EXEC (or UNWATCH, or any MULTI/EXEC such as BullMQ's) clears every other
 * caller's watches, and their read-modify-writes then overwrite each other unnoticed. Here they
 * run on a dedicated connection (a duplicate of the one given), one transaction at a time; other
 * processes' writes still abort an EXEC as WATCH promises.
 */
export class Transactions {
  private readonly connection: Redis;
  private tail: Promise<unknown> = Promise.resolve();

  /**
   * `onError` receives the dedicated connection's errors (ioredis's duplicate() copies options,
   * not listeners: without one, every reconnect attempt prints an "Unhandled error event").
   */
  constructor(redis: Redis, onError: (err: Error) => void) {
    this.connection = redis.duplicate();
    this.connection.on('error', onError);
  }

  /**
   * Runs `body` alone on the dedicated connection (after the transactions queued before it). A
   * body that throws leaves no watch behind for the next one.
   */
  run<T>(body: (redis: Redis) => Promise<T>): Promise<T> {
    const result = this.tail.then(async () => {
      try {
        return await body(this.connection);
      } catch (err) {
        await this.connection.unwatch().catch(() => undefined);
        throw err;
      }
    });
    this.tail = result.catch(() => undefined);
    return result;
  }

  /** Closes the dedicated connection once the queued transactions have ended. */
  async close(): Promise<void> {
    await this.tail;
    this.connection.disconnect();
  }
}
