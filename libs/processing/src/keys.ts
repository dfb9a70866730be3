/**
 * Redis keys of the processing service, all under the queue prefix. A client id is URI-encoded
 * where it is a key segment, so no id (a certificate CN, a token's client id) can contain the
 * `:` that separates segments and reach another client's keys.
 */
export class Keys {
  constructor(readonly prefix: string) {}
  job = (id: string) => `${this.prefix}:proc:job:${id}`;
  events = (id: string) => `${this.prefix}:proc:job:${id}:events`;
  sessionJobs = (id: string) => `${this.prefix}:proc:session:${id}:jobs`;
  batchJobs = (id: string) => `${this.prefix}:proc:batch:${id}:jobs`;
  batch = (id: string) => `${this.prefix}:proc:batch:${id}`;
  session = (id: string) => `${this.prefix}:proc:session:${id}`;
  idempotency = (clientId: string, key: string) => `${this.prefix}:proc:idem:${seg(clientId)}:${key}`;
  /** The client's jobs, by creation time (ListJobs without a session or batch). */
  clientJobs = (clientId: string) => `${this.prefix}:proc:client:${seg(clientId)}:jobs`;
  /** How many of the client's jobs are QUEUED (fairness): a counter. */
  clientQueued = (clientId: string) => `${this.prefix}:proc:queued:${seg(clientId)}`;
  /** Ids of the client's unfinished jobs (its queued-job quota): a set. */
  clientOpenJobs = (clientId: string) => `${this.prefix}:proc:client:${seg(clientId)}:open`;
  /** The client's open sessions, scored by expiry time (its open-session quota). */
  clientSessions = (clientId: string) => `${this.prefix}:proc:client:${seg(clientId)}:sessions`;
  /** Key prefix of a rate limiter (rate-limiter-flexible appends `:<client>`). */
  rateLimit = (name: string) => `${this.prefix}:proc:rate:${name}`;
  /** A published artifact of the client (JobArtifacts), by its id; expires with the artifact. */
  artifact = (clientId: string, id: string) => `${this.prefix}:proc:artifact:${seg(clientId)}:${id}`;
  seenEvent = (queue: string, id: string) => `${this.prefix}:proc:seen:${queue}:${id}`;
  lastEvent = (queue: string) => `${this.prefix}:proc:last-event:${queue}`;
}

/** A client id as one key segment. */
export function seg(clientId: string): string {
  return encodeURIComponent(clientId);
}
