import { MultiBar, Presets, type SingleBar } from 'cli-progress';
import { stream } from '@dops/grpc-client';
import { processingV1 } from '@dops/proto';
import type { Clients } from '../clients';
import { EXIT } from '../exit-codes';
import { short, type Output } from '../output';
import { downloadJobImages } from './download';

const TERMINAL = new Set<processingV1.JobState>([
  processingV1.JobState.SUCCEEDED,
  processingV1.JobState.FAILED,
  processingV1.JobState.CANCELLED,
]);

export interface WatchOptions {
  /** Download each finished job's images here through the API as `<job id>-<i>.<format>` (sha256 verified). */
  outDir?: string;
  signal: AbortSignal;
}

/**
 * Follows jobs to their end: a progress bar per job on stderr (or one JSON line per event with
 * --json), then the final jobs. Exit 0 when all succeeded, 1 when any failed or was cancelled.
 */
export async function watchCommand(
  clients: Clients,
  out: Output,
  jobIds: string[],
  options: WatchOptions,
): Promise<number> {
  const bars =
    out.json || !process.stderr.isTTY
      ? undefined
      : new MultiBar(
          {
            clearOnComplete: false,
            hideCursor: true,
            format: ' {job} {stage} [{bar}] {value}/{total} {state}',
          },
          Presets.shades_classic,
        );
  try {
    const finals = await Promise.all(jobIds.map((id) => followJob(clients, out, id, bars, options)));
    const written: string[] = [];
    if (options.outDir)
      for (const job of finals)
        written.push(...(await downloadJobImages(clients, job, options.outDir, options.signal)));
    bars?.stop();
    out.result({ jobs: finals, files: written }, () =>
      finals
        .map((j) => {
          const images = j.images
            .map((a) => `\n  ${a.id ?? ''} ${a.width}x${a.height} ${a.format}${a.path ? ` ${a.path}` : ''}`)
            .join('');
          const error = j.error ? ` ${j.error.code}: ${j.error.message}` : '';
          return `${j.id} ${short(j.state, 'JOB_STATE_')}${error}${images}`;
        })
        .concat(written.map((f) => `wrote ${f}`))
        .join('\n'),
    );
    return finals.every((j) => j.state === processingV1.JobState.SUCCEEDED) ? EXIT.ok : EXIT.failed;
  } finally {
    bars?.stop();
  }
}

async function followJob(
  clients: Clients,
  out: Output,
  jobId: string,
  bars: MultiBar | undefined,
  options: WatchOptions,
): Promise<processingV1.Job> {
  let bar: SingleBar | undefined;
  let last: processingV1.Job | undefined;
  const label = jobId.slice(0, 12);
  for await (const msg of stream(clients.processing.watchJob, { jobId }, { signal: options.signal })) {
    if (out.json) process.stdout.write(`${JSON.stringify({ jobId, event: msg })}\n`);
    if (msg.job) {
      last = msg.job;
      const state = short(msg.job.state, 'JOB_STATE_');
      if (bars) {
        bar ??= bars.create(1, 0, { job: label, stage: msg.job.stage || '-', state });
        bar.update({ stage: msg.job.stage || '-', state });
      }
      if (TERMINAL.has(msg.job.state)) {
        if (bar && msg.job.state === processingV1.JobState.SUCCEEDED) bar.update(bar.getTotal());
        return msg.job;
      }
    } else if (msg.progress && bar) {
      bar.setTotal(msg.progress.total);
      bar.update(msg.progress.step, { stage: msg.progress.stage, state: 'running' });
    } else if (msg.queued && bar) {
      bar.update({ state: `queued (${msg.queued.ahead} ahead)` });
    } else if (msg.stage && bar) {
      bar.update(0, { stage: msg.stage.stage, state: msg.stage.status });
    }
  }
  if (!last) throw new Error(`the watch of ${jobId} ended without a job`);
  return last;
}
