/** Redis keys of the processing service, all under the queue prefix. */
export class Keys {
  constructor(readonly prefix: string) {}
  job = (id: string) => `${this.prefix}:proc:job:${id}`;
  events = (id: string) => `${this.prefix}:proc:job:${id}:events`;
  jobs = () => `${this.prefix}:proc:jobs`;
  sessionJobs = (id: string) => `${this.prefix}:proc:session:${id}:jobs`;
  batchJobs = (id: string) => `${this.prefix}:proc:batch:${id}:jobs`;
  batch = (id: string) => `${this.prefix}:proc:batch:${id}`;
  session = (id: string) => `${this.prefix}:proc:session:${id}`;
  idempotency = (clientId: string, key: string) => `${this.prefix}:proc:idem:${clientId}:${key}`;
  clientQueued = (clientId: string) => `${this.prefix}:proc:queued:${clientId}`;
  seenEvent = (queue: string, id: string) => `${this.prefix}:proc:seen:${queue}:${id}`;
  lastEvent = (queue: string) => `${this.prefix}:proc:last-event:${queue}`;
}
