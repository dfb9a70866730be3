import type { Redis, Transactions } from '@dops/queue';
import { DopsError } from '@dops/errors';
import { TERMINAL, type JobEvent, type JobRecord } from './job-record';
import type { Keys } from './keys';
import { notFound, ownedBy } from './ownership';
import { processMetrics } from '@dops/metrics';

const MAX_EVENTS = 1_000;

export interface JobStoreOptions {
  /** Terminal jobs are kept this long. */
  retentionMs: number;
  /** A session's job index expires with the session. */
  sessionTtlMs: number;
}

/**
 * Jobs in Redis: one JSON record per job and one event stream per job (what WatchJob replays
 * from), updated together in one MULTI under WATCH, so a terminal state is never overwritten and
 * every state change has its event; the client's unfinished-job set (its quota) changes in the
 * same MULTI (through `transactions`, whose connection is theirs alone). Terminal jobs expire
 * after `retentionMs`.
 */
export class JobStore {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly options: JobStoreOptions,
    private readonly transactions: Transactions,
  ) {}

  /** Writes a new (unfinished) record and indexes it under its client, session and batch. */
  async create(record: JobRecord): Promise<void> {
    const multi = this.redis
      .multi()
      .set(this.keys.job(record.id), JSON.stringify(record))
      .xadd(
        this.keys.events(record.id),
        'MAXLEN',
        '~',
        MAX_EVENTS,
        '*',
        'e',
        JSON.stringify({ kind: 'state' }),
      )
      .zadd(this.keys.clientJobs(record.clientId), record.createdAt, record.id)
      .zadd(this.keys.clientOpenJobs(record.clientId), record.createdAt, record.id);
    if (record.sessionId) {
      const index = this.keys.sessionJobs(record.sessionId);
      multi.zadd(index, record.createdAt, record.id).pexpire(index, this.options.sessionTtlMs);
    }
    if (record.batchId) multi.zadd(this.keys.batchJobs(record.batchId), record.createdAt, record.id);
    if (record.counted) multi.incr(this.keys.clientQueued(record.clientId));
    await multi.exec();
  }

  async get(id: string): Promise<JobRecord | undefined> {
    const raw = await this.redis.get(this.keys.job(id));
    return raw ? (JSON.parse(raw) as JobRecord) : undefined;
  }

  /** The client's job; NOT_FOUND naming job_id when there is none or another client owns it. */
  async require(clientId: string, id: string): Promise<JobRecord> {
    const record = ownedBy(id ? await this.get(id) : undefined, clientId);
    if (!record) throw notFound('job', id);
    return record;
  }

  /**
   * Applies `change` to the record (skipped when it returns undefined, or when the record is
   * terminal and `fromTerminal` is not set) and appends `event` plus a state event when the
   * state changed. Returns the new record, or undefined when nothing changed.
   */
  async update(
    id: string,
    change: (r: JobRecord) => JobRecord | undefined,
    options: { event?: JobEvent; fromTerminal?: boolean } = {},
  ): Promise<JobRecord | undefined> {
    return this.transactions.run((redis) => this.updateOn(redis, id, change, options));
  }

  private async updateOn(
    redis: Redis,
    id: string,
    change: (r: JobRecord) => JobRecord | undefined,
    options: { event?: JobEvent; fromTerminal?: boolean },
  ): Promise<JobRecord | undefined> {
    const key = this.keys.job(id);
    for (let attempt = 0; attempt < 50; attempt++) {
      await redis.watch(key);
      const raw = await redis.get(key);
      const before = raw ? (JSON.parse(raw) as JobRecord) : undefined;
      const after =
        before && (options.fromTerminal || !TERMINAL.has(before.state))
          ? change(structuredClone(before))
          : undefined;
      if (!before || !after) {
        await redis.unwatch();
        return undefined;
      }
      after.updatedAt = Date.now();
      const multi = redis.multi().set(key, JSON.stringify(after));
      const events = this.keys.events(id);
      if (options.event)
        multi.xadd(events, 'MAXLEN', '~', MAX_EVENTS, '*', 'e', JSON.stringify(options.event));
      if (before.state !== after.state || before.held !== after.held)
        multi.xadd(events, 'MAXLEN', '~', MAX_EVENTS, '*', 'e', JSON.stringify({ kind: 'state' }));
      if (before.counted && !after.counted) multi.decr(this.keys.clientQueued(after.clientId));
      if (!before.counted && after.counted) multi.incr(this.keys.clientQueued(after.clientId));
      const open = this.keys.clientOpenJobs(after.clientId);
      if (!TERMINAL.has(before.state) && TERMINAL.has(after.state)) multi.zrem(open, id);
      if (TERMINAL.has(before.state) && !TERMINAL.has(after.state)) multi.zadd(open, Date.now(), id);
      if (TERMINAL.has(after.state)) {
        multi.pexpire(key, this.options.retentionMs).pexpire(events, this.options.retentionMs);
      } else {
        multi.persist(key).persist(events);
      }
      if ((await multi.exec()) !== null) {
        // Counted once: only the replica whose transaction moved the job to its terminal state.
        if (!TERMINAL.has(before.state) && TERMINAL.has(after.state)) {
          try {
            processMetrics().jobsFinished.inc({
              state: after.state.toLowerCase(),
              code: after.error?.code ?? '',
            });
          } catch {
            // A metric never fails a change that is stored.
          }
        }
        return after;
      }
    }
    throw DopsError.unavailable(`job '${id}' is being updated too often; try again`);
  }

  /** Appends an event that changes no field (progress). */
  async appendEvent(id: string, event: JobEvent): Promise<void> {
    await this.redis.xadd(this.keys.events(id), 'MAXLEN', '~', MAX_EVENTS, '*', 'e', JSON.stringify(event));
  }

  /** The record and the id of the last event written with it (the point a watch continues from). */
  async snapshot(id: string): Promise<{ record?: JobRecord; lastEventId: string }> {
    const result = await this.redis
      .multi()
      .get(this.keys.job(id))
      .xrevrange(this.keys.events(id), '+', '-', 'COUNT', 1)
      .exec();
    const raw = result?.[0]?.[1] as string | null;
    const last = (result?.[1]?.[1] as [string, string[]][] | undefined)?.[0]?.[0];
    return { record: raw ? (JSON.parse(raw) as JobRecord) : undefined, lastEventId: last ?? '0-0' };
  }

  /** Ids of an index, newest first, from `offset`; missing (expired) records are pruned. */
  async page(index: string, offset: number, count: number): Promise<{ records: JobRecord[]; next?: number }> {
    const ids = await this.redis.zrevrange(index, offset, offset + count - 1);
    const records: JobRecord[] = [];
    for (const id of ids) {
      const r = await this.get(id);
      if (r) records.push(r);
      else await this.redis.zrem(index, id);
    }
    return { records, next: ids.length === count ? offset + count : undefined };
  }

  /** Every record of an index (sessions and batches; bounded by the batch maximum). */
  async all(index: string): Promise<JobRecord[]> {
    const ids = await this.redis.zrange(index, 0, -1);
    const records = await Promise.all(ids.map((id) => this.get(id)));
    return records.filter((r): r is JobRecord => r !== undefined);
  }

  /** The client's jobs now QUEUED (its fairness count). */
  async queuedOf(clientId: string): Promise<number> {
    return Number((await this.redis.get(this.keys.clientQueued(clientId))) ?? 0);
  }
}
