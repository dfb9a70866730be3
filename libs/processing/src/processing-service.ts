import { defineService } from '@dops/grpc-server';
import { processingV1 } from '@dops/proto';
import { toProtoJob } from './job-record';
import type { Processing } from './processing';

type SessionLike = Awaited<ReturnType<Processing['requireSession']>>;

const SESSION_STATES = {
  ACTIVE: processingV1.SessionState.ACTIVE,
  PAUSED: processingV1.SessionState.PAUSED,
  CANCELLED: processingV1.SessionState.CANCELLED,
} as const;

function toProtoSession(s: SessionLike): processingV1.Session {
  return {
    id: s.id,
    clientId: s.clientId,
    state: SESSION_STATES[s.state],
    defaults: s.defaults,
    createdAt: new Date(s.createdAt),
  };
}

/** dops.processing.v1.ProcessingService over a Processing. */
export function processingService(processing: Processing) {
  return defineService(processingV1.ProcessingServiceService, {
    submitJob: async (req, ctx) => {
      const { job, created } = await processing.submitJob(req, ctx.traceparent);
      return { job: toProtoJob(job), created };
    },
    getJob: async (req) => ({ job: toProtoJob(await processing.getJob(req.jobId)) }),
    listJobs: async (req) => {
      const { jobs, nextPageToken } = await processing.listJobs(req);
      return { jobs: jobs.map(toProtoJob), nextPageToken };
    },
    cancelJob: async (req) => ({ job: toProtoJob(await processing.cancelJob(req.jobId)) }),
    retryJob: async (req) => ({ job: toProtoJob(await processing.retryJob(req.jobId)) }),
    watchJob: (req, ctx) => processing.watchJob(req.jobId, ctx.signal),
    submitBatch: async (req, ctx) => processing.submitBatch(req, ctx.traceparent),
    getBatch: async (req) => ({ batch: await processing.getBatch(req.batchId) }),
    cancelBatch: async (req) => ({ batch: await processing.cancelBatch(req.batchId) }),
    createSession: async (req) => ({ session: toProtoSession(await processing.createSession(req)) }),
    getSession: async (req) => ({ session: toProtoSession(await processing.requireSession(req.sessionId)) }),
    pauseSession: async (req) => ({ session: toProtoSession(await processing.pauseSession(req.sessionId)) }),
    resumeSession: async (req) => ({
      session: toProtoSession(await processing.resumeSession(req.sessionId)),
    }),
    cancelSession: async (req) => ({
      session: toProtoSession(await processing.cancelSession(req.sessionId)),
    }),
  });
}
