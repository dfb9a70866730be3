import { call } from '@dops/grpc-client';
import { processingV1 } from '@dops/proto';
import type { Clients } from '../clients';
import { short, table, type Output } from '../output';

function jobRows(jobs: processingV1.Job[]): string {
  return table([
    ['ID', 'STATE', 'TEMPLATE', 'STAGE', 'CLIENT', 'SESSION', 'BATCH', 'CREATED'],
    ...jobs.map((j) => [
      j.id,
      short(j.state, 'JOB_STATE_'),
      j.template,
      j.stage || '-',
      j.clientId,
      j.sessionId || '-',
      j.batchId || '-',
      j.createdAt?.toISOString() ?? '',
    ]),
  ]);
}

/** `dops jobs`: list jobs, filtered by state, session or batch, every page. */
export async function listJobsCommand(
  clients: Clients,
  out: Output,
  filter: { state?: string; session?: string; batch?: string },
): Promise<number> {
  const state = filter.state
    ? (`JOB_STATE_${filter.state.toUpperCase()}` as processingV1.JobState)
    : undefined;
  const jobs: processingV1.Job[] = [];
  let pageToken = '';
  do {
    const page = await call(
      clients.processing.listJobs,
      processingV1.ListJobsRequest.fromPartial({
        state,
        sessionId: filter.session,
        batchId: filter.batch,
        pageSize: 500,
        pageToken,
      }),
    );
    jobs.push(...page.jobs);
    pageToken = page.nextPageToken;
  } while (pageToken);
  out.result({ jobs }, () => jobRows(jobs));
  return 0;
}

/** `dops get <job>`. */
export async function getJobCommand(clients: Clients, out: Output, jobId: string): Promise<number> {
  const { job } = await call(clients.processing.getJob, { jobId });
  out.result({ job }, () => jobRows([job!]));
  return 0;
}

/** `dops cancel <job...>`: each job cancelled; prints the resulting states. */
export async function cancelJobsCommand(clients: Clients, out: Output, jobIds: string[]): Promise<number> {
  const jobs: processingV1.Job[] = [];
  for (const jobId of jobIds) jobs.push((await call(clients.processing.cancelJob, { jobId })).job!);
  out.result({ jobs }, () => jobRows(jobs));
  return 0;
}

/** `dops retry <job>`: queue a failed or cancelled job again. */
export async function retryJobCommand(clients: Clients, out: Output, jobId: string): Promise<number> {
  const { job } = await call(clients.processing.retryJob, { jobId });
  out.result({ job }, () => jobRows([job!]));
  return 0;
}
