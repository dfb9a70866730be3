import type { processingV1 } from '@dops/proto';
import type { Flows } from './flows';
import { newId, type JobLifecycle } from './job-lifecycle';
import type { JobRecord } from './job-record';
import type { JobStore } from './job-store';
import type { Keys } from './keys';
import type { SessionRecord, SessionStore } from './session-store';

/** Sessions as a whole: their jobs are held on pause, queued again on resume, cancelled together. */
export class SessionControl {
  constructor(
    private readonly keys: Keys,
    private readonly store: JobStore,
    private readonly sessions: SessionStore,
    private readonly flows: Flows,
    private readonly lifecycle: JobLifecycle,
  ) {}

  /** A new session of the client; RESOURCE_EXHAUSTED at its open-session quota. */
  create(clientId: string, req: processingV1.CreateSessionRequest): Promise<SessionRecord> {
    return this.sessions.create(clientId, newId(), req.defaults ?? { modelId: '', loras: [] });
  }

  /** The client's session (its expiry starts again); NOT_FOUND when missing, expired or another client's. */
  require(clientId: string, id: string): Promise<SessionRecord> {
    return this.sessions.require(clientId, id);
  }

  async pause(clientId: string, id: string): Promise<SessionRecord> {
    const session = await this.sessions.setState(clientId, id, 'PAUSED');
    for (const job of await this.jobsOf(session)) {
      if (job.state !== 'QUEUED' || job.held) continue;
      if (await this.flows.remove(job))
        await this.store.update(job.id, (r) => (r.state === 'QUEUED' ? { ...r, held: true } : undefined));
    }
    return session;
  }

  async resume(clientId: string, id: string): Promise<SessionRecord> {
    const session = await this.sessions.setState(clientId, id, 'ACTIVE');
    for (const job of await this.jobsOf(session)) {
      if (job.state !== 'QUEUED' || !job.held) continue;
      const updated = await this.store.update(job.id, (r) => ({ ...r, held: false }));
      if (updated) await this.lifecycle.enqueue(updated);
    }
    return session;
  }

  async cancel(clientId: string, id: string): Promise<SessionRecord> {
    const session = await this.sessions.setState(clientId, id, 'CANCELLED');
    await this.lifecycle.cancelAll(await this.jobsOf(session));
    return session;
  }

  /** The session's jobs; only its own client's, whatever the index holds. */
  private async jobsOf(session: SessionRecord): Promise<JobRecord[]> {
    const jobs = await this.store.all(this.keys.sessionJobs(session.id));
    return jobs.filter((j) => j.clientId === session.clientId);
  }
}
