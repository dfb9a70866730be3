// "Nothing is lost": the whole stack as real processes (real Redis with AOF, real gRPC, real
// Python workers on CPU with the tiny SD 1.5 fixture) under crashes, restarts and load.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { DopsError } from '@dops/errors';
import { call, stream } from '@dops/grpc-client';
import { commonV1, inferenceV1, processingV1 } from '@dops/proto';
import { sleep, waitFor } from '@dops/testing';
import { createRedis } from '@dops/queue';
import { FIXTURES, isAlive, startStack, type Stack } from '../src/stack';

const MODEL_FILE = 'sd15-tiny.safetensors';
let MODEL = '';
const UPSCALER = path.join(FIXTURES, 'upscaler-compact-2x-tiny.safetensors');
const { JobState } = processingV1;
const TERMINAL = new Set([JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED]);

function spec(over: Partial<inferenceV1.GenerationParams> = {}, extra: Partial<processingV1.JobSpec> = {}) {
  return processingV1.JobSpec.fromPartial({
    template: 'txt2img',
    safety: commonV1.SafetyPolicy.OFF,
    params: inferenceV1.GenerationParams.fromPartial({
      modelId: MODEL,
      prompt: 'a lighthouse on a cliff at dawn',
      width: 64,
      height: 64,
      steps: 1,
      seed: 42,
      ...over,
    }),
    ...extra,
  });
}

async function submit(
  stack: Stack,
  jobSpec: processingV1.JobSpec,
  over: Partial<processingV1.SubmitJobRequest> = {},
): Promise<processingV1.SubmitJobResponse> {
  return call(stack.client.submitJob, processingV1.SubmitJobRequest.fromPartial({ spec: jobSpec, ...over }), {
    deadlineMs: 15_000,
  });
}

async function getJob(stack: Stack, jobId: string): Promise<processingV1.Job> {
  return (await call(stack.client.getJob, { jobId }, { deadlineMs: 10_000 })).job!;
}

/** Polls GetJob until the job is terminal (bounded). */
async function terminal(stack: Stack, jobId: string, timeoutMs = 90_000): Promise<processingV1.Job> {
  return waitFor(
    async () => {
      const job = await getJob(stack, jobId);
      return TERMINAL.has(job.state) ? job : undefined;
    },
    { timeoutMs, intervalMs: 200, description: `job ${jobId} terminal` },
  );
}

/** Every WatchJob message until the stream ends (the job is terminal); bounded. */
async function watchAll(
  stack: Stack,
  jobId: string,
  timeoutMs = 120_000,
  onMessage?: (m: processingV1.WatchJobResponse) => void,
) {
  const messages: processingV1.WatchJobResponse[] = [];
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs);
  try {
    for await (const m of stream(stack.client.watchJob, { jobId }, { signal: abort.signal })) {
      messages.push(m);
      onMessage?.(m);
    }
  } finally {
    clearTimeout(timer);
  }
  return messages;
}

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

/** Width and height of a PNG from its IHDR chunk. */
function pngSize(file: string): { width: number; height: number } {
  const b = readFileSync(file);
  expect(b.subarray(1, 4).toString()).toBe('PNG');
  return { width: b.readUInt32BE(16), height: b.readUInt32BE(20) };
}

/** Logs a line to the test output (the tally, timings). */
function note(line: string): void {
  process.stdout.write(`[nothing-lost] ${line}\n`);
}

const isTerminalJob = (m: processingV1.WatchJobResponse) => m.job !== undefined && TERMINAL.has(m.job.state);

/** Kills `pid` with SIGKILL and waits until it is gone (bounded). */
async function kill9(pid: number): Promise<void> {
  process.kill(pid, 'SIGKILL');
  await waitFor(() => !isAlive(pid), { timeoutMs: 10_000, description: `pid ${pid} gone` });
}

/** The first progress message of `stage` on a watch, then the rest of the stream in the background. */
function watchWithProgress(stack: Stack, jobId: string, minStep = 1) {
  let resolveProgress!: () => void;
  const progressed = new Promise<void>((r) => (resolveProgress = r));
  const all = watchAll(stack, jobId, 240_000, (m) => {
    if (m.progress && m.progress.stage === 'generate' && m.progress.step >= minStep) resolveProgress();
  });
  let timer: NodeJS.Timeout | undefined;
  const progress = Promise.race([
    progressed,
    all.then(() => {
      throw new Error(`job ${jobId} ended before it reported progress`);
    }),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no progress of job ${jobId} within 120 s`)), 120_000);
    }),
  ]).finally(() => clearTimeout(timer));
  return { progress, all };
}

async function expectImage(job: processingV1.Job, size: number): Promise<void> {
  expect(job.state).toBe(JobState.SUCCEEDED);
  expect(job.images).toHaveLength(1);
  const image = job.images[0]!;
  expect({ width: image.width, height: image.height }).toEqual({ width: size, height: size });
  expect(pngSize(image.path)).toEqual({ width: size, height: size });
  expect(sha256(image.path)).toBe(image.sha256);
}

describe('nothing is lost: one inference node with postprocessing', () => {
  let stack: Stack;
  beforeAll(async () => {
    const t0 = Date.now();
    stack = await startStack({ inferenceNodes: 1, postprocessing: true });
    MODEL = await stack.modelId(MODEL_FILE);
    note(`stack (1 inference node + postprocessing) up in ${Date.now() - t0} ms`);
  });
  afterAll(async () => {
    await stack?.stop();
  });
  const guarded = (fn: () => Promise<void>) => async () => {
    try {
      await fn();
    } catch (err) {
      process.stderr.write(`${stack.logs()}\n`);
      throw err;
    }
  };

  it(
    'runs txt2img → upscale → safety and writes the 128×128 image it reports',
    guarded(async () => {
      const t0 = Date.now();
      const { job } = await submit(
        stack,
        spec({ steps: 4 }, { upscale: { modelPath: UPSCALER }, safety: commonV1.SafetyPolicy.FLAG }),
      );
      expect(job!.stages).toEqual(['generate', 'upscale', 'safety']);
      const done = await terminal(stack, job!.id, 180_000);
      await expectImage(done, 128);
      note(`workflow txt2img → upscale → safety: ${Date.now() - t0} ms`);
    }),
  );

  it(
    'makes one job of one idempotency key submitted twice at once',
    guarded(async () => {
      const key = `idem-${Date.now()}`;
      const req = { idempotencyKey: key };
      const [a, b] = await Promise.all([submit(stack, spec(), req), submit(stack, spec(), req)]);
      expect(a.job!.id).toBe(b.job!.id);
      expect([a.created, b.created].sort()).toEqual([false, true]);
      const listed = await call(
        stack.client.listJobs,
        processingV1.ListJobsRequest.fromPartial({ pageSize: 500 }),
        { deadlineMs: 10_000 },
      );
      expect(listed.jobs.filter((j) => j.id === a.job!.id)).toHaveLength(1);
      const done = await terminal(stack, a.job!.id);
      await expectImage(done, 64);
      // Later submissions of the key still answer the same job.
      const again = await submit(stack, spec(), req);
      expect(again.job!.id).toBe(a.job!.id);
      expect(again.created).toBe(false);
    }),
  );

  it(
    'finishes a generation whose Python worker is killed (-9) in the middle of it',
    guarded(async () => {
      const t0 = Date.now();
      const inference = stack.nodes[0]!.inference;
      const before = stack.workerPids(inference);
      expect(before).toHaveLength(1);
      // Enough steps that the kill at step 1 lands mid-generation; few enough that the rerun
      // finishes quickly on a busy 2-core CI machine.
      const { job } = await submit(stack, spec({ steps: 60, seed: 7 }));
      const watch = watchWithProgress(stack, job!.id, 1);
      await watch.progress;
      await kill9(before[0]!);
      // The job's end first (polled), then the watch's: a failure says which one did not come.
      const done = await terminal(stack, job!.id, 240_000);
      await expectImage(done, 64);
      const messages = await Promise.race([
        watch.all,
        sleep(30_000).then(() => {
          throw new Error(`job ${job!.id} is ${String(done.state)} but its WatchJob stream did not end`);
        }),
      ]);
      expect(messages.filter(isTerminalJob)).toHaveLength(1);
      expect(messages[messages.length - 1]!.job?.state).toBe(JobState.SUCCEEDED);
      // The supervisor restarted the worker: a new pid under the same service.
      const after = stack.workerPids(inference);
      expect(after).toHaveLength(1);
      expect(after[0]).not.toBe(before[0]);
      // The kill hit the running generation: the stage ran again (BullMQ retry of UNAVAILABLE).
      // (The watch may open after the first pick-up, so the service's own log tells the attempts.)
      const attempts = inference
        .output()
        .split('\n')
        .filter((l) => l.includes(`"jobId":"${job!.id}"`) && l.includes('"msg":"stage started"'));
      expect(attempts.some((l) => l.includes('"attempt":2'))).toBe(true);
      expect(
        messages.filter((m) => m.stage?.stage === 'generate' && m.stage.status === 'completed'),
      ).toHaveLength(1);
      note(`worker kill -9 mid-generation → SUCCEEDED after restart in ${Date.now() - t0} ms`);
    }),
  );

  it(
    'accounts for every one of many jobs through bad requests, cancels and a worker kill',
    guarded(async () => {
      const t0 = Date.now();
      const total = Number(process.env['DOPS_E2E_JOBS'] ?? 200);
      let rng = 12345;
      const random = () => (rng = (rng * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
      const accepted: string[] = [];
      const refused: Record<string, number> = {};
      const cancelRequested = new Set<string>();
      const watches: Promise<processingV1.WatchJobResponse[]>[] = [];
      const watched: string[] = [];
      let workerKilled = false;
      const inference = stack.nodes[0]!.inference;

      const submitOne = async (i: number) => {
        let jobSpec = spec({ seed: 1000 + i, prompt: `job ${i}` });
        let expectCode: string | undefined;
        if (i % 20 === 7) [jobSpec, expectCode] = [spec({ width: 65 }), 'INVALID_ARGUMENT'];
        else if (i % 20 === 13) [jobSpec, expectCode] = [spec({ modelId: 'ffffffffffffffff' }), 'NOT_FOUND'];
        else if (i % 40 === 3) [jobSpec, expectCode] = [{ ...spec(), template: 'nope' }, 'NOT_FOUND'];
        else if (i % 40 === 17) [jobSpec, expectCode] = [spec({ steps: 500 }), 'INVALID_ARGUMENT'];
        else if (i % 25 === 5)
          jobSpec = spec(
            { seed: i },
            { upscale: { modelPath: UPSCALER }, safety: commonV1.SafetyPolicy.FLAG },
          );
        try {
          const { job } = await submit(stack, jobSpec);
          if (expectCode) throw new Error(`job ${i} was accepted; expected ${expectCode}`);
          accepted.push(job!.id);
          if (i % 10 === 0 && watches.length < 20) {
            watched.push(job!.id);
            watches.push(watchAll(stack, job!.id, 400_000));
          }
          // Some are cancelled at once, while (most likely) still queued.
          if (random() < 0.07) {
            cancelRequested.add(job!.id);
            await call(stack.client.cancelJob, { jobId: job!.id }, { deadlineMs: 10_000 });
          }
        } catch (err) {
          if (!(err instanceof DopsError) || err.code !== expectCode) throw err;
          refused[err.code] = (refused[err.code] ?? 0) + 1;
        }
      };

      // Running jobs are cancelled now and then, and the worker is killed once, while jobs flow.
      let submitting = true;
      let runningCancels = 0;
      const chaos = (async () => {
        while (submitting || runningCancels < 5) {
          await sleep(700);
          const running = (
            await call(
              stack.client.listJobs,
              processingV1.ListJobsRequest.fromPartial({ state: JobState.RUNNING, pageSize: 10 }),
              { deadlineMs: 10_000 },
            )
          ).jobs;
          const target = running.find((j) => !cancelRequested.has(j.id));
          if (!workerKilled && accepted.length > total / 3 && target) {
            const pids = stack.workerPids(inference);
            if (pids.length === 1) {
              await kill9(pids[0]!);
              workerKilled = true;
              continue;
            }
          }
          if (target && runningCancels < 5 && random() < 0.5) {
            cancelRequested.add(target.id);
            runningCancels++;
            await call(stack.client.cancelJob, { jobId: target.id }, { deadlineMs: 10_000 });
          }
          if (!submitting && running.length === 0) break;
        }
      })();

      const inFlight = new Set<Promise<void>>();
      for (let i = 0; i < total; i++) {
        const p = submitOne(i).finally(() => inFlight.delete(p));
        inFlight.add(p);
        if (inFlight.size >= 4) await Promise.race(inFlight);
      }
      await Promise.all(inFlight);
      submitting = false;
      const submittedIn = Date.now() - t0;

      // Every job ends; bounded.
      const pending = async () => {
        const open = [];
        for (const state of [JobState.QUEUED, JobState.RUNNING]) {
          const res = await call(
            stack.client.listJobs,
            processingV1.ListJobsRequest.fromPartial({ state, pageSize: 500 }),
            { deadlineMs: 10_000 },
          );
          open.push(...res.jobs);
        }
        return open;
      };
      await waitFor(async () => (await pending()).length === 0, {
        timeoutMs: 240_000,
        intervalMs: 1_000,
        description: 'no job queued or running',
      }).catch(async (err: unknown) => {
        const open = await pending();
        note(
          `still open: ${open.map((j) => `${j.id} ${j.state} ${j.stage} cancel=${cancelRequested.has(j.id)}`).join('; ')}`,
        );
        throw err;
      });
      await chaos;

      const tally = { submitted: accepted.length, succeeded: 0, failed: 0, cancelled: 0, other: 0 };
      const failures: string[] = [];
      const finals = new Map<string, processingV1.Job>();
      for (const id of accepted) {
        const job = await getJob(stack, id);
        finals.set(id, job);
        if (job.state === JobState.SUCCEEDED) tally.succeeded++;
        else if (job.state === JobState.FAILED) {
          tally.failed++;
          failures.push(`${id}: ${job.error?.code} ${job.error?.message}`);
        } else if (job.state === JobState.CANCELLED) tally.cancelled++;
        else tally.other++;
      }
      note(
        `${total} requests in ${Date.now() - t0} ms (submitted in ${submittedIn} ms): refused ${JSON.stringify(refused)}; ` +
          `${JSON.stringify(tally)}; cancels requested ${cancelRequested.size} (${runningCancels} of running jobs); worker killed ${workerKilled}`,
      );
      if (failures.length) note(`failed: ${failures.join('\n')}`);
      expect(new Set(accepted).size).toBe(accepted.length);
      expect(tally.other).toBe(0);
      expect(tally.succeeded + tally.failed + tally.cancelled).toBe(tally.submitted);
      expect(tally.submitted + Object.values(refused).reduce((a, b) => a + b, 0)).toBe(total);
      expect(workerKilled).toBe(true);
      // Only cancelled jobs may end CANCELLED; nothing fails (the worker kill is retried).
      for (const [id, job] of finals)
        if (job.state === JobState.CANCELLED) expect(cancelRequested.has(id)).toBe(true);
      expect(failures).toEqual([]);
      // Succeeded jobs have their image.
      for (const job of finals.values())
        if (job.state === JobState.SUCCEEDED) expect(job.images).toHaveLength(1);
      // A watch sees exactly one terminal state, the final one.
      const streams = await Promise.all(watches);
      streams.forEach((messages, i) => {
        const ends = messages.filter(isTerminalJob);
        expect(ends).toHaveLength(1);
        expect(ends[0]!.job!.state).toBe(finals.get(watched[i]!)!.state);
      });
      // And the queues hold nothing any more (no stage job waiting, delayed or active).
      const redis = createRedis(stack.redis.url);
      try {
        // SCAN, not KEYS: the ACL user dops may not run KEYS (REDIS_ACL_RULES).
        const keys: string[] = [];
        for await (const batch of redis.scanStream({ match: `${stack.prefix}:*`, count: 1000 }))
          keys.push(...(batch as string[]));
        const open = keys.filter((k) =>
          /:(wait|active|prioritized|delayed|paused|waiting-children)$/.test(k),
        );
        const lengths = await Promise.all(
          open.map(async (k) => ((await redis.type(k)) === 'list' ? redis.llen(k) : redis.zcard(k))),
        );
        expect(Object.fromEntries(open.map((k, i) => [k, lengths[i]]).filter(([, n]) => n !== 0))).toEqual(
          {},
        );
      } finally {
        redis.disconnect();
      }
    }),
    420_000,
  );
});

describe('nothing is lost: two inference nodes', () => {
  let stack: Stack;
  beforeAll(async () => {
    const t0 = Date.now();
    stack = await startStack({ inferenceNodes: 2, postprocessing: false });
    MODEL = await stack.modelId(MODEL_FILE);
    note(`stack (2 inference nodes) up in ${Date.now() - t0} ms`);
  });
  afterAll(async () => {
    await stack?.stop();
  });
  const guarded = (fn: () => Promise<void>) => async () => {
    try {
      await fn();
    } catch (err) {
      process.stderr.write(`${stack.logs()}\n`);
      throw err;
    }
  };

  /** The node whose inference process logged that it started `jobId`'s generate stage. */
  const runnerOf = (jobId: string) =>
    stack.nodes.find((n) =>
      n.inference
        .output()
        .split('\n')
        .some((l) => l.includes(`"jobId":"${jobId}"`) && l.includes('"msg":"stage started"')),
    );

  it(
    'hands the job of a killed (-9) inference process to the other one and completes it exactly once',
    guarded(async () => {
      const t0 = Date.now();
      // Warm up: the model becomes resident on a node (which processing then prefers).
      const warm = await submit(stack, spec({ seed: 1 }));
      await expectImage(await terminal(stack, warm.job!.id, 120_000), 64);
      const { job } = await submit(stack, spec({ steps: 30, seed: 9 }));
      const watch = watchWithProgress(stack, job!.id, 1);
      await watch.progress;
      const victim = runnerOf(job!.id);
      expect(victim).toBeDefined();
      const survivor = stack.nodes.find((n) => n !== victim)!;
      const victimWorkers = stack.workerPids(victim!.inference);
      await kill9(stack.servicePid(victim!.inference));
      // Its Python worker follows its parent.
      await waitFor(() => victimWorkers.every((pid) => !isAlive(pid)), {
        timeoutMs: 20_000,
        description: 'the killed node’s worker exited',
      });
      const messages = await watch.all;
      const done = await terminal(stack, job!.id, 120_000);
      await expectImage(done, 64);
      expect(runnerOf(job!.id)).toBeDefined();
      expect(survivor.inference.output().includes(`"jobId":"${job!.id}"`)).toBe(true);
      expect(messages.filter(isTerminalJob)).toHaveLength(1);
      expect(
        messages.filter((m) => m.stage?.stage === 'generate' && m.stage.status === 'completed'),
      ).toHaveLength(1);
      // Exactly one result: the job's images are those of one completion, and it stays SUCCEEDED.
      await sleep(3_000);
      const later = await getJob(stack, job!.id);
      expect(later.state).toBe(JobState.SUCCEEDED);
      expect(later.images).toEqual(done.images);
      note(`inference kill -9 mid-job → other node finished it in ${Date.now() - t0} ms`);
    }),
  );

  it(
    'keeps queued jobs across a Redis restart (AOF) and runs them',
    guarded(async () => {
      const t0 = Date.now();
      await stack.stopConsumers();
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) ids.push((await submit(stack, spec({ seed: 100 + i }))).job!.id);
      for (const id of ids) expect((await getJob(stack, id)).state).toBe(JobState.QUEUED);
      await stack.redis.restart();
      // Processing reconnects; the jobs are still there and still queued.
      for (const id of ids)
        await waitFor(async () => (await getJob(stack, id)).state === JobState.QUEUED, {
          timeoutMs: 30_000,
          intervalMs: 250,
          description: `job ${id} readable after the restart`,
        });
      await stack.addInferenceNode();
      for (const id of ids) await expectImage(await terminal(stack, id, 120_000), 64);
      note(`Redis restart with 3 queued jobs → all SUCCEEDED in ${Date.now() - t0} ms`);
    }),
  );
});
