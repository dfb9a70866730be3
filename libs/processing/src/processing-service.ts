import { defineService } from '@dops/grpc-server';
import { processingV1 } from '@dops/proto';
import { toProtoJob } from './job-record';
import type { Processing } from './processing';

type SessionLike = Awaited<ReturnType<Processing['requireSession']>>;

function toProtoSession(s: SessionLike): processingV1.Session {
  return {
    id: s.id,
    clientId: s.clientId,
    state: processingV1.SessionState[s.state],
    defaults: s.defaults,
    createdAt: new Date(s.createdAt),
  };
}

/**
 * dops.processing.v1.ProcessingService over a Processing. The client is `ctx.principal.id`,
 * the identity the server proved from the call's credential; no request field names it.
 */
export function processingService(processing: Processing) {
  return defineService(
    processingV1.ProcessingServiceService,
    {
      submitJob: async (req, ctx) => {
        const { job, created } = await processing.submitJob(ctx.principal.id, req, ctx.traceparent);
        return { job: toProtoJob(job), created };
      },
      getJob: async (req, ctx) => ({ job: toProtoJob(await processing.getJob(ctx.principal.id, req.jobId)) }),
      listJobs: async (req, ctx) => {
        const { jobs, nextPageToken } = await processing.listJobs(ctx.principal.id, req);
        return { jobs: jobs.map(toProtoJob), nextPageToken };
      },
      cancelJob: async (req, ctx) => ({
        job: toProtoJob(await processing.cancelJob(ctx.principal.id, req.jobId)),
      }),
      retryJob: async (req, ctx) => ({
        job: toProtoJob(await processing.retryJob(ctx.principal.id, req.jobId)),
      }),
      watchJob: (req, ctx) => processing.watchJob(ctx.principal.id, req.jobId, ctx.signal),
      submitBatch: async (req, ctx) => processing.submitBatch(ctx.principal.id, req, ctx.traceparent),
      getBatch: async (req, ctx) => ({ batch: await processing.getBatch(ctx.principal.id, req.batchId) }),
      cancelBatch: async (req, ctx) => ({
        batch: await processing.cancelBatch(ctx.principal.id, req.batchId),
      }),
      createSession: async (req, ctx) => ({
        session: toProtoSession(await processing.createSession(ctx.principal.id, req)),
      }),
      getSession: async (req, ctx) => ({
        session: toProtoSession(await processing.requireSession(ctx.principal.id, req.sessionId)),
      }),
      pauseSession: async (req, ctx) => ({
        session: toProtoSession(await processing.pauseSession(ctx.principal.id, req.sessionId)),
      }),
      resumeSession: async (req, ctx) => ({
        session: toProtoSession(await processing.resumeSession(ctx.principal.id, req.sessionId)),
      }),
      cancelSession: async (req, ctx) => ({
        session: toProtoSession(await processing.cancelSession(ctx.principal.id, req.sessionId)),
      }),
      downloadArtifact: (req, ctx) => processing.downloadArtifact(ctx.principal.id, req, ctx.signal),
    },
    // The public job API: every method is scoped to the caller's own jobs, batches and sessions.
    { default: ['client'] },
  );
}
