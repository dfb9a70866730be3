import { DopsError } from '@dops/errors';
import type { processingV1 } from '@dops/proto';
import type { Redis, Transactions } from '@dops/queue';
import type { Keys } from './keys';
import { notFound, ownedBy } from './ownership';

export type SessionStateName = 'ACTIVE' | 'PAUSED' | 'CANCELLED';

/** A session as kept in Redis (`<prefix>:proc:session:<id>`, JSON, expiring). */
export interface SessionRecord {
  id: string;
  clientId: string;
  state: SessionStateName;
  defaults: processingV1.SessionDefaults;
  createdAt: number;
}

export interface SessionStoreOptions {
  /** A session unused this long expires (its job index with it); each use starts it again. */
  sessionTtlMs: number;
  /** Sessions one client may have open (not cancelled, not expired). */
  maxOpenSessions: number;
}

// KEYS: the client's open sessions (sorted by expiry), the new session. ARGV: now, ttl, max,
// record, id. Returns -1 when created, else the earliest expiry of the open sessions.
const CREATE = `
redis.call('zremrangebyscore', KEYS[1], '-inf', ARGV[1])
if redis.call('zcard', KEYS[1]) >= tonumber(ARGV[3]) then
  return redis.call('zrange', KEYS[1], 0, 0, 'WITHSCORES')[2]
end
redis.call('set', KEYS[2], ARGV[4], 'PX', ARGV[2])
redis.call('zadd', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), ARGV[5])
redis.call('pexpire', KEYS[1], ARGV[2])
return -1
`;

// KEYS: the session, its job index, the client's open sessions. ARGV: ttl, new expiry, id,
// '1' when still open. Returns 0 when the session is gone (expired).
const TOUCH = `
if redis.call('pexpire', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('pexpire', KEYS[2], ARGV[1])
if ARGV[4] == '1' then
  redis.call('zadd', KEYS[3], 'XX', ARGV[2], ARGV[3])
  redis.call('pexpire', KEYS[3], ARGV[1])
end
return 1
`;

/**
 * Sessions in Redis, each owned by the client that created it and expiring `sessionTtlMs` after
 * its last use. A client's open sessions are a sorted set scored by expiry, updated in the same
 * script or transaction as the session, so the open-session quota holds across replicas.
 */
export class SessionStore {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly options: SessionStoreOptions,
    private readonly transactions: Transactions,
  ) {}

  /** A new ACTIVE session of `clientId`; RESOURCE_EXHAUSTED (retry hint: the next expiry) at the quota. */
  async create(clientId: string, id: string, defaults: processingV1.SessionDefaults): Promise<SessionRecord> {
    const now = Date.now();
    const session: SessionRecord = { id, clientId, state: 'ACTIVE', defaults, createdAt: now };
    const { sessionTtlMs: ttl, maxOpenSessions: max } = this.options;
    const keys = [this.keys.clientSessions(clientId), this.keys.session(id)];
    const result = Number(
      await this.redis.eval(CREATE, 2, ...keys, now, ttl, max, JSON.stringify(session), id),
    );
    if (result >= 0)
      throw new DopsError(
        'RESOURCE_EXHAUSTED',
        `this client has ${max} open sessions, as many as it may; cancel one or retry once one expires`,
        {
          retryable: true,
          retryAfterMs: Math.max(1, result - now),
          metadata: { quota: 'open_sessions', limit: String(max) },
        },
      );
    return session;
  }

  /** The client's session, its expiry started again; NOT_FOUND when missing, expired or another client's. */
  async require(clientId: string, id: string): Promise<SessionRecord> {
    const raw = id ? await this.redis.get(this.keys.session(id)) : null;
    const session = ownedBy(raw ? (JSON.parse(raw) as SessionRecord) : undefined, clientId);
    if (!session || !(await this.touch(session))) throw notFound('session', id);
    return session;
  }

  /** The session a new job joins: as `require`, and FAILED_PRECONDITION once cancelled. */
  async requireOpen(clientId: string, id: string): Promise<SessionRecord> {
    const session = await this.require(clientId, id);
    if (session.state === 'CANCELLED')
      throw new DopsError(
        'FAILED_PRECONDITION',
        `session_id: session '${id}' is cancelled; it takes no more jobs`,
        {
          violations: [{ field: 'session_id', description: 'the session is cancelled' }],
        },
      );
    return session;
  }

  /**
   * Moves the client's session to `state` (CANCELLED closes it: it no longer counts as open).
   * NOT_FOUND as `require`; FAILED_PRECONDITION when it is already cancelled.
   */
  async setState(clientId: string, id: string, state: SessionStateName): Promise<SessionRecord> {
    return this.transactions.run((redis) => this.setStateOn(redis, clientId, id, state));
  }

  private async setStateOn(
    redis: Redis,
    clientId: string,
    id: string,
    state: SessionStateName,
  ): Promise<SessionRecord> {
    const key = this.keys.session(id);
    const ttl = this.options.sessionTtlMs;
    for (let attempt = 0; attempt < 50; attempt++) {
      await redis.watch(key);
      const raw = id ? await redis.get(key) : null;
      const session = ownedBy(raw ? (JSON.parse(raw) as SessionRecord) : undefined, clientId);
      if (!session || session.state === 'CANCELLED') {
        await redis.unwatch();
        if (!session) throw notFound('session', id);
        throw new DopsError('FAILED_PRECONDITION', `session_id: session '${id}' is cancelled`, {
          violations: [{ field: 'session_id', description: 'the session is cancelled' }],
        });
      }
      const next = { ...session, state };
      const open = this.keys.clientSessions(clientId);
      const multi = redis
        .multi()
        .set(key, JSON.stringify(next), 'PX', ttl)
        .pexpire(this.keys.sessionJobs(id), ttl);
      if (state === 'CANCELLED') multi.zrem(open, id);
      else multi.zadd(open, 'XX', Date.now() + ttl, id).pexpire(open, ttl);
      if ((await multi.exec()) !== null) return next;
    }
    throw DopsError.unavailable(`session '${id}' is being updated too often; try again`);
  }

  /** Starts the session's expiry again; false when it is already gone. */
  private async touch(session: SessionRecord): Promise<boolean> {
    const ttl = this.options.sessionTtlMs;
    const keys = [
      this.keys.session(session.id),
      this.keys.sessionJobs(session.id),
      this.keys.clientSessions(session.clientId),
    ];
    const open = session.state === 'CANCELLED' ? '0' : '1';
    return Number(await this.redis.eval(TOUCH, 3, ...keys, ttl, Date.now() + ttl, session.id, open)) === 1;
  }
}
