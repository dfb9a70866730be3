import { BurstyRateLimiter, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { DopsError } from '@dops/errors';
import type { Redis } from '@dops/queue';
import { TERMINAL, type JobRecord } from './job-record';
import { seg, type Keys } from './keys';

export interface ClientQuotaOptions {
  /** Unfinished (QUEUED or RUNNING, held or not) jobs one client may have. */
  maxQueuedPerClient: number;
  /** Submits (SubmitJob, SubmitBatch, RetryJob) per second per client. */
  submitsPerSecond: number;
  /** Submits a client may make over the rate within `BURST_WINDOW_S`; 0 = none. */
  submitBurst: number;
  /** Retry hint when the queued-job quota is full (jobs end at no known time). */
  retryAfterMs: number;
}

/** Window of the burst allowance, in seconds. */
export const BURST_WINDOW_S = 10;

/** A reservation whose job is still missing or terminal after this long was left by a crash. */
const RESERVATION_GRACE_MS = 60_000;

// Reserves ARGV[3..] in the sorted set KEYS[1] (score ARGV[2], the time) unless that takes it
// past ARGV[1] members; ids already there count once. Returns -1 when reserved, else the count.
const RESERVE = `
local added = 0
for i = 3, #ARGV do
  if not redis.call('zscore', KEYS[1], ARGV[i]) then added = added + 1 end
end
local open = redis.call('zcard', KEYS[1])
if open + added > tonumber(ARGV[1]) then return open end
for i = 3, #ARGV do redis.call('zadd', KEYS[1], 'NX', ARGV[2], ARGV[i]) end
return -1
`;

/**
 * Per-client quotas that hold across replicas (all state in Redis): a submit rate
 * (rate-limiter-flexible, fixed one-second windows plus a burst allowance) and a bound on
 * unfinished jobs (the sorted set `clientOpenJobs`, which JobStore keeps in step with job states in the same
 * transaction as each state change).
 */
export class ClientQuotas {
  private readonly submits: BurstyRateLimiter | RateLimiterRedis;

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly options: ClientQuotaOptions,
  ) {
    const rate = new RateLimiterRedis({
      storeClient: redis,
      keyPrefix: keys.rateLimit('submit'),
      points: options.submitsPerSecond,
      duration: 1,
    });
    this.submits =
      options.submitBurst > 0
        ? new BurstyRateLimiter(
            rate,
            new RateLimiterRedis({
              storeClient: redis,
              keyPrefix: keys.rateLimit('submit-burst'),
              points: options.submitBurst,
              duration: BURST_WINDOW_S,
            }),
          )
        : rate;
  }

  /** Counts one submit; RESOURCE_EXHAUSTED with the time until the next is allowed past the rate. */
  async consumeSubmit(clientId: string): Promise<void> {
    try {
      await this.submits.consume(seg(clientId), 1);
    } catch (err) {
      if (!(err instanceof RateLimiterRes))
        throw DopsError.unavailable('cannot reach Redis to count submits', err);
      throw new DopsError(
        'RESOURCE_EXHAUSTED',
        `more than ${this.options.submitsPerSecond} submits per second from this client; retry later`,
        {
          retryable: true,
          retryAfterMs: Math.max(1, err.msBeforeNext),
          metadata: { quota: 'submits_per_second', limit: String(this.options.submitsPerSecond) },
        },
      );
    }
  }

  /**
   * Reserves `jobIds` in the client's unfinished jobs; RESOURCE_EXHAUSTED when they would pass
   * `maxQueuedPerClient` (not retryable when they could never fit). Release them when the
   * jobs are not created after all.
   */
  async reserveQueued(clientId: string, jobIds: string[]): Promise<void> {
    const max = this.options.maxQueuedPerClient;
    if (jobIds.length > max)
      throw new DopsError(
        'RESOURCE_EXHAUSTED',
        `${jobIds.length} jobs are more than this client may have unfinished (${max})`,
        { retryable: false, metadata: { quota: 'queued_per_client', limit: String(max) } },
      );
    let open = await this.reserve(clientId, jobIds);
    // Full: drop what a crash between a reservation and its record left behind, then try again.
    if (open >= 0 && (await this.reconcile(clientId)) > 0) open = await this.reserve(clientId, jobIds);
    if (open >= 0)
      throw new DopsError(
        'RESOURCE_EXHAUSTED',
        `this client has ${open} unfinished jobs of the ${max} it may have; retry once some have finished`,
        {
          retryable: true,
          retryAfterMs: this.options.retryAfterMs,
          metadata: { quota: 'queued_per_client', limit: String(max) },
        },
      );
  }

  async releaseQueued(clientId: string, jobIds: string[]): Promise<void> {
    if (jobIds.length) await this.redis.zrem(this.keys.clientOpenJobs(clientId), ...jobIds);
  }

  /** The client's unfinished jobs as counted for the quota. */
  async openJobs(clientId: string): Promise<number> {
    return this.redis.zcard(this.keys.clientOpenJobs(clientId));
  }

  private async reserve(clientId: string, jobIds: string[]): Promise<number> {
    const key = this.keys.clientOpenJobs(clientId);
    const max = this.options.maxQueuedPerClient;
    return Number(await this.redis.eval(RESERVE, 1, key, max, Date.now(), ...jobIds));
  }

  /**
   * Removes ids whose job is missing or terminal and that were reserved longer ago than the
   * grace a submit or retry in flight has before its record catches up; returns how many.
   */
  private async reconcile(clientId: string): Promise<number> {
    const key = this.keys.clientOpenJobs(clientId);
    const scored = await this.redis.zrange(key, 0, -1, 'WITHSCORES');
    if (!scored.length) return 0;
    const ids = scored.filter((_, i) => i % 2 === 0);
    const raws = await this.redis.mget(...ids.map((id) => this.keys.job(id)));
    const before = Date.now() - RESERVATION_GRACE_MS;
    const stale = ids.filter((_, i) => {
      const raw = raws[i];
      const ended = !raw || TERMINAL.has((JSON.parse(raw) as JobRecord).state);
      return ended && Number(scored[2 * i + 1]) < before;
    });
    if (stale.length) await this.redis.zrem(key, ...stale);
    return stale.length;
  }
}
