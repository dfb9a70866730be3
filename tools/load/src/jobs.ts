import { call, createClient } from '@dops/grpc-client';
import { commonV1, processingV1 } from '@dops/proto';
import { clientCredentials } from '@dops/security';
import type { Target } from './ghz';

const { JobState } = processingV1;
const TERMINAL = new Set([JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED]);

/** A processing client of one caller (bearer token). */
export function processingClient(target: Target, token: string): processingV1.ProcessingServiceClient {
  return createClient(processingV1.ProcessingServiceClient, target.address, {
    credentials: clientCredentials({ caFile: target.caFile, token }),
  });
}

/** Submits the cancel targets at low priority, one by one; returns their ids. */
export async function submitCancelTargets(
  client: processingV1.ProcessingServiceClient,
  spec: Record<string, unknown>,
  count: number,
): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const request = processingV1.SubmitJobRequest.fromJSON({ spec, priority: 'PRIORITY_LOW' });
    const { job } = await call(client.submitJob, request, { deadlineMs: 30_000 });
    ids.push(job!.id);
  }
  return ids;
}

/** Every job of the caller created at or after `since` (ListJobs, all pages). */
export async function jobsSince(
  client: processingV1.ProcessingServiceClient,
  since: Date,
): Promise<processingV1.Job[]> {
  const jobs: processingV1.Job[] = [];
  let pageToken = '';
  do {
    const page = await call(
      client.listJobs,
      processingV1.ListJobsRequest.fromPartial({ pageSize: 500, pageToken }),
      {
        deadlineMs: 30_000,
      },
    );
    jobs.push(...page.jobs.filter((j) => j.createdAt && j.createdAt >= since));
    pageToken = page.nextPageToken;
  } while (pageToken);
  return jobs;
}

/**
 * Polls the callers' jobs created since `since` until every one is terminal or `timeoutMs` has
 * passed; returns the last listing of each (terminal or not).
 */
export async function drain(
  clients: readonly processingV1.ProcessingServiceClient[],
  since: Date,
  timeoutMs: number,
  onProgress: (open: number, total: number) => void = () => undefined,
): Promise<processingV1.Job[]> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const jobs = (await Promise.all(clients.map((c) => jobsSince(c, since)))).flat();
    const open = jobs.filter((j) => !TERMINAL.has(j.state)).length;
    onProgress(open, jobs.length);
    if (open === 0 || Date.now() >= end) return jobs;
    await new Promise((resolve) => setTimeout(resolve, 2_000));
  }
}

/** Counts of a run's jobs: by state, by error code, images, and the span they took. */
export interface JobTally {
  total: number;
  byState: Record<string, number>;
  byErrorCode: Record<string, number>;
  /** The first message seen for each error code (what to look at when jobs fail). */
  errorSamples: Record<string, string>;
  images: number;
  /** First job created → last job updated, seconds. */
  spanS: number;
  /** Submit → done of succeeded jobs (queueing included), ms. */
  doneP50Ms: number;
  doneP95Ms: number;
  /** The cancel targets by final state. */
  cancelTargets: Record<string, number>;
}

/** Tallies the listed jobs. */
export function tally(jobs: readonly processingV1.Job[], cancelTargets: readonly string[]): JobTally {
  const byState: Record<string, number> = {};
  const byErrorCode: Record<string, number> = {};
  const errorSamples: Record<string, string> = {};
  const targets: Record<string, number> = {};
  const done: number[] = [];
  let images = 0;
  let first = Infinity;
  let last = 0;
  const targetSet = new Set(cancelTargets);
  for (const job of jobs) {
    const state = processingV1.jobStateToJSON(job.state);
    byState[state] = (byState[state] ?? 0) + 1;
    if (job.error?.code) {
      const code = commonV1.errorCodeToJSON(job.error.code);
      byErrorCode[code] = (byErrorCode[code] ?? 0) + 1;
      errorSamples[code] ??= `${job.error.stage}: ${job.error.message}`;
    }
    if (targetSet.has(job.id)) targets[state] = (targets[state] ?? 0) + 1;
    const created = job.createdAt?.getTime() ?? 0;
    const updated = job.updatedAt?.getTime() ?? created;
    first = Math.min(first, created);
    last = Math.max(last, updated);
    if (job.state === JobState.SUCCEEDED) {
      images += job.images.length;
      done.push(updated - created);
    }
  }
  done.sort((a, b) => a - b);
  const q = (p: number) =>
    done.length ? done[Math.min(done.length - 1, Math.floor(p * done.length))]! : NaN;
  return {
    total: jobs.length,
    byState,
    byErrorCode,
    errorSamples,
    images,
    spanS: jobs.length ? Math.round((last - first) / 10) / 100 : 0,
    doneP50Ms: q(0.5),
    doneP95Ms: q(0.95),
    cancelTargets: targets,
  };
}
