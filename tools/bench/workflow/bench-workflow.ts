// Workflow bench over real processes: Redis + model + processing (+ inference later) as an operator
// runs them (tsx, env config, CPU backend, tiny sd15 fixture, 64×64, txt2img, safety off, no upscale,
// so the workflow is the single `generate` stage; no postprocessing service is started).
//   1. SubmitJob latency p50/p90/p99 (N submits at 1 and at 8 concurrent clients) against a GetJob
//      baseline (gRPC + one Redis read) in the same run. No consumer runs yet: pure enqueue.
//   2. Cancel latency of QUEUED jobs (consumer not started): CancelJob call → CANCELLED seen on WatchJob.
//   3. Inference starts (1 CPU device → stage concurrency 1); model preloaded; end-to-end jobs/s for
//      100 one-step jobs, first submit → last SUCCEEDED (the record's updated_at), and each job's time
//      inside the consumer (BullMQ processedOn → finishedOn of its generate stage job).
//   4. Cancel latency of RUNNING jobs (50 steps, cancelled after the first progress event).
// Writes tools/bench/results/workflow-<host>.{json,md}. Every process is stopped at the end (and on
// Ctrl-C / error).
//   npx tsx tools/bench/workflow/bench-workflow.ts [--n 300] [--jobs 100] [--cancels 12] [--threads 1]
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createServer } from 'node:net';
import { call, createClient, stream } from '@dops/grpc-client';
import { commonV1, modelV1, processingV1 } from '@dops/proto';
import { createRedis, redactRedisUrl, startTestRedis, type TestRedis } from '@dops/queue';
import { type ServiceProcess, startServiceProcess, testCredentials } from '@dops/testing';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}
const N = Number(arg('n', '300'));
const JOBS = Number(arg('jobs', '100'));
const CANCELS = Number(arg('cancels', '12'));
const CONCURRENCY = Number(arg('concurrency', '8'));
// Torch intra-op threads of the worker; 1 by default (shared 2-core box, see overhead.ts).
const THREADS = arg('threads', '1');
const RUNNING_STEPS = Number(arg('running-steps', '50'));
const HOST = process.env['BENCH_HOST'] ?? 'cpu';

const ROOT = path.resolve(__dirname, '../../..');
const FIXTURES = path.join(ROOT, 'tools/fixtures/generated');
const PREFIX = `bench-wf-${process.pid}`;
const NODE_ID = `bench-${process.pid}`;

const T0 = Date.now();
const log = (msg: string) => process.stdout.write(`[${((Date.now() - T0) / 1000).toFixed(1)}s] ${msg}\n`);

// ---- stats ----------------------------------------------------------------------------------

interface Stats {
  n: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  minMs: number;
  maxMs: number;
  meanMs: number;
}
function stats(samples: number[]): Stats {
  const s = [...samples].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
  const r = (x: number) => Math.round(x * 100) / 100;
  return {
    n: s.length,
    p50Ms: r(q(0.5)),
    p90Ms: r(q(0.9)),
    p99Ms: r(q(0.99)),
    minMs: r(s[0]!),
    maxMs: r(s[s.length - 1]!),
    meanMs: r(s.reduce((a, b) => a + b, 0) / s.length),
  };
}
const nowMs = () => Number(process.hrtime.bigint()) / 1e6;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const a = server.address();
      server.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

// ---- processes ------------------------------------------------------------------------------

const procs: ServiceProcess[] = [];
let redis: TestRedis | undefined;
let tmp = '';

function start(app: string, env: Record<string, string>): ServiceProcess {
  const p = startServiceProcess(app, env);
  procs.push(p);
  return p;
}

async function cleanup(): Promise<void> {
  // Processing first (no new work), then inference (stops its worker), then model, then Redis.
  for (const p of [...procs].reverse()) await p.stop(20_000).catch(() => undefined);
  await redis?.stop().catch(() => undefined);
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
}
// Last resort if the bench itself dies: no orphaned service processes.
process.on('exit', () => {
  for (const p of procs) if (p.child.exitCode === null) p.child.kill('SIGKILL');
});
for (const sig of ['SIGINT', 'SIGTERM'] as const)
  process.once(sig, () => {
    log(`${sig}: stopping everything`);
    void cleanup().finally(() => process.exit(130));
  });

// ---- measurements ---------------------------------------------------------------------------

type Processing = processingV1.ProcessingServiceClient;

/** `count` calls of fn spread over `clients` sequential loops (each its own channel); per-call ms and calls/s. */
async function timed(
  label: string,
  clients: Processing[],
  count: number,
  fn: (c: Processing, i: number) => Promise<unknown>,
): Promise<Stats & { callsPerS: number; concurrency: number }> {
  const samples: number[] = [];
  let next = 0;
  const t0 = nowMs();
  await Promise.all(
    clients.map(async (c) => {
      for (;;) {
        const i = next++;
        if (i >= count) return;
        const t = nowMs();
        await fn(c, i);
        samples.push(nowMs() - t);
      }
    }),
  );
  const wall = nowMs() - t0;
  const s = { ...stats(samples), callsPerS: Math.round((count / wall) * 1000), concurrency: clients.length };
  log(
    `${label.padEnd(44)} p50 ${s.p50Ms} ms  p90 ${s.p90Ms}  p99 ${s.p99Ms}  max ${s.maxMs}  (${s.callsPerS}/s)`,
  );
  return s;
}

function submitRequest(
  modelId: string,
  i: number,
  steps: number,
  clientId = 'bench',
): processingV1.SubmitJobRequest {
  return processingV1.SubmitJobRequest.fromPartial({
    clientId,
    spec: {
      template: 'txt2img',
      safety: commonV1.SafetyPolicy.OFF,
      params: {
        modelId,
        prompt: 'a lighthouse on a cliff at dawn',
        width: 64,
        height: 64,
        steps,
        seed: i,
        cfgScale: 7,
      },
    },
  });
}

/**
 * Opens WatchJob, waits for `ready(msg)` (the job in the wanted state), calls CancelJob and returns
 * ms from the call to the CANCELLED job message, plus the CancelJob call's own time and answer.
 */
async function cancelVia(
  client: Processing,
  jobId: string,
  ready: (m: processingV1.WatchJobResponse) => boolean,
): Promise<{
  toCancelledMs: number;
  callMs: number;
  answeredState: string;
  seen: string[];
  cancelWall: number;
  progressAfter: number;
}> {
  const ac = new AbortController();
  const seen: string[] = [];
  let t0 = 0;
  let cancelWall = 0;
  let progressAfter = 0;
  let callMs = 0;
  let answeredState = '';
  let cancelCall: Promise<void> | undefined;
  try {
    for await (const m of stream(client.watchJob, { jobId }, { signal: ac.signal, deadlineMs: 120_000 })) {
      seen.push(
        m.job ? `job:${m.job.state}` : m.progress ? `progress:${m.progress.step}` : Object.keys(m).join(','),
      );
      if (!cancelCall && ready(m)) {
        t0 = nowMs();
        cancelWall = Date.now();
        cancelCall = call(client.cancelJob, { jobId }).then((r) => {
          callMs = nowMs() - t0;
          answeredState = r.job?.state ?? '';
        });
        continue;
      }
      if (cancelCall && m.progress) progressAfter++;
      if (cancelCall && m.job?.state === processingV1.JobState.CANCELLED) {
        const toCancelledMs = nowMs() - t0;
        await cancelCall;
        return { toCancelledMs, callMs, answeredState, seen, cancelWall, progressAfter };
      }
      if (m.job && [processingV1.JobState.SUCCEEDED, processingV1.JobState.FAILED].includes(m.job.state))
        throw new Error(
          `job ${jobId} ended ${m.job.state} (${m.job.error?.message ?? ''}); events ${seen.join(' ')}`,
        );
    }
    throw new Error(`WatchJob of ${jobId} ended without CANCELLED; events ${seen.join(' ')}`);
  } finally {
    ac.abort();
  }
}

function machine() {
  let redisVersion = '';
  try {
    redisVersion =
      execFileSync('redis-server', ['--version'], { encoding: 'utf8' }).match(/v=(\S+)/)?.[1] ?? '';
  } catch {
    /* left empty */
  }
  return {
    cpu: os.cpus()[0]?.model,
    logicalCores: os.cpus().length,
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    redis: redisVersion,
    platform: `${os.platform()} ${os.release()}`,
  };
}
const loadavg = () => os.loadavg().map((x) => Math.round(x * 100) / 100);

// ---- main -----------------------------------------------------------------------------------

async function main(): Promise<void> {
  const loadStart = loadavg();
  log(`load average at start ${loadStart.join(' ')}`);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dops-bench-wf-'));
  const modelConfigFile = path.join(tmp, 'model.json');
  // No memory service in this stack: an empty address turns reservations off (env '' means unset).
  fs.writeFileSync(modelConfigFile, JSON.stringify({ model: { memoryAddress: '' } }));
  const [modelPort, inferencePort] = [await freePort(), await freePort()];
  redis = await startTestRedis(); // no AOF: the bench measures the services, not fsync
  const common = {
    HF_HUB_OFFLINE: '1',
    DOPS_REDIS_URL: redis.url,
    DOPS_QUEUE_PREFIX: PREFIX,
    DOPS_QUEUE_NODE_ID: NODE_ID,
    OMP_NUM_THREADS: THREADS,
    MKL_NUM_THREADS: THREADS,
  };
  const modelAddress = `127.0.0.1:${modelPort}`;
  const inferenceAddress = `127.0.0.1:${inferencePort}`;
  const model = start('model', {
    ...common,
    DOPS_GRPC_PORT: String(modelPort),
    DOPS_CONFIG_FILE: modelConfigFile,
    DOPS_MODEL_ROOTS: FIXTURES,
    DOPS_MODEL_CONFIG_DIR: path.join(FIXTURES, 'configs'),
    DOPS_MODEL_STATE_PATH: path.join(tmp, 'registry.json'),
    DOPS_MODEL_HOST_ADDRESS: inferenceAddress,
  });
  const processingProc = start('processing', {
    ...common,
    DOPS_PROCESSING_MODEL_SERVICE_ADDRESS: modelAddress,
    DOPS_INPUT_ROOT: path.join(tmp, 'inputs'),
    // One client submits the whole load: the per-client quotas must not shape it.
    DOPS_PROCESSING_MAX_QUEUED_PER_CLIENT: '100000',
    DOPS_PROCESSING_SUBMITS_PER_SECOND: '100000',
  });
  await Promise.all([model.listening(120_000), processingProc.listening(120_000)]);
  log(`model ${model.address}, processing ${processingProc.address}, redis ${redactRedisUrl(redis.url)}`);

  const models = createClient(modelV1.ModelServiceClient, modelAddress, {
    credentials: testCredentials('ops'),
  });
  const clients = Array.from({ length: CONCURRENCY }, () =>
    createClient(processingV1.ProcessingServiceClient, processingProc.address, {
      credentials: testCredentials('alice'),
    }),
  );
  const one = clients[0]!;
  const raw = createRedis(redis.url);
  try {
    let modelId = '';
    for (let i = 0; i < 100 && !modelId; i++) {
      modelId = await call(models.getModel, { path: 'sd15-tiny.safetensors' }).then(
        (r) => r.model?.id ?? '',
        async () => {
          await sleep(200); // the registry's first scan may still run
          return '';
        },
      );
    }
    if (!modelId) throw new Error('sd15-tiny.safetensors not in the model registry');
    log(`model id ${modelId}`);

    // ---- 1. enqueue latency (no consumer yet) ----
    const queuedIds: string[] = [];
    const submit = (c: Processing, i: number) =>
      call(c.submitJob, submitRequest(modelId, i, 1)).then((r) => queuedIds.push(r.job!.id));
    await timed('warm-up SubmitJob ×50', [one], 50, submit);
    const probeId = queuedIds[0]!;
    const getJob = (c: Processing) => call(c.getJob, { jobId: probeId });
    await timed('warm-up GetJob ×50', [one], 50, getJob);
    const enqueue = {
      getJobC1: await timed('baseline GetJob, 1 client', [one], N, getJob),
      submitJobC1: await timed('SubmitJob, 1 client', [one], N, submit),
      getJobC8: await timed(`baseline GetJob, ${CONCURRENCY} clients`, clients, N, getJob),
      submitJobC8: await timed(`SubmitJob, ${CONCURRENCY} clients`, clients, N, submit),
    };
    const backlog = queuedIds.length;

    // ---- 2. cancel of queued jobs (no consumer: they stay queued) ----
    const queuedCancel: number[] = [];
    const queuedCancelCall: number[] = [];
    const queuedAnswered: string[] = [];
    // Spread over the backlog (front, middle, back of the queue).
    const picks = Array.from(
      { length: CANCELS },
      (_, k) => queuedIds[Math.floor(((k + 0.5) * backlog) / CANCELS)]!,
    );
    for (const id of picks) {
      const r = await cancelVia(one, id, (m) => m.job?.state === processingV1.JobState.QUEUED);
      queuedCancel.push(r.toCancelledMs);
      queuedCancelCall.push(r.callMs);
      queuedAnswered.push(r.answeredState);
    }
    const queuedStats = stats(queuedCancel);
    log(
      `cancel QUEUED → CANCELLED on WatchJob (backlog ${backlog}): p50 ${queuedStats.p50Ms} ms p90 ${queuedStats.p90Ms}`,
    );
    // The rest of the backlog goes too (so the consumer starts on an empty queue).
    const rest = queuedIds.filter((id) => !picks.includes(id));
    const bulk = await timed(`bulk CancelJob of the rest (${rest.length})`, clients, rest.length, (c, i) =>
      call(c.cancelJob, { jobId: rest[i]! }),
    );

    // ---- 3. throughput with the consumer ----
    const inference = start('inference', {
      ...common,
      DOPS_GRPC_PORT: String(inferencePort),
      DOPS_INFERENCE_MODEL_SERVICE_ADDRESS: modelAddress,
      DOPS_INFERENCE_MODEL_ROOTS: FIXTURES,
      DOPS_INFERENCE_CONFIG_DIR: path.join(FIXTURES, 'configs'),
      DOPS_ARTIFACT_ROOT: path.join(tmp, 'artifacts'),
      DOPS_INPUT_ROOT: path.join(tmp, 'inputs'),
    });
    const tInf = nowMs();
    await inference.listening(180_000);
    log(`inference ${inference.address} listening after ${((nowMs() - tInf) / 1000).toFixed(1)} s`);
    const tLoad = nowMs();
    await call(
      models.loadModel,
      { modelId, deviceId: 'cpu:0', tier: modelV1.Tier.VRAM },
      { deadlineMs: 180_000 },
    );
    const loadS = (nowMs() - tLoad) / 1000;
    log(`model loaded on cpu:0 in ${loadS.toFixed(2)} s`);

    const waitAll = async (ids: string[], timeoutMs: number) => {
      const pending = new Set(ids);
      const done = new Map<string, processingV1.Job>();
      const until = Date.now() + timeoutMs;
      while (pending.size > 0) {
        if (Date.now() > until) throw new Error(`${pending.size} jobs not terminal after ${timeoutMs} ms`);
        for (const id of [...pending]) {
          const { job } = await call(one.getJob, { jobId: id });
          if (
            job &&
            [
              processingV1.JobState.SUCCEEDED,
              processingV1.JobState.FAILED,
              processingV1.JobState.CANCELLED,
            ].includes(job.state)
          ) {
            pending.delete(id);
            done.set(id, job);
          } else break; // FIFO: the first pending one is the one to wait for
        }
        if (pending.size > 0) await sleep(100);
      }
      return done;
    };
    // Warm-up through the whole workflow (first generation compiles/allocates).
    const warm: string[] = [];
    for (let i = 0; i < 3; i++) warm.push((await call(one.submitJob, submitRequest(modelId, i, 1))).job!.id);
    const warmDone = await waitAll(warm, 120_000);
    for (const j of warmDone.values())
      if (j.state !== processingV1.JobState.SUCCEEDED)
        throw new Error(`warm-up job ${j.id} ${j.state}: ${j.error?.message}`);
    log('warm-up jobs succeeded');

    const ids: string[] = [];
    const submitWall = Date.now();
    const tSubmit = nowMs();
    for (let i = 0; i < JOBS; i++)
      ids.push((await call(one.submitJob, submitRequest(modelId, 1000 + i, 1))).job!.id);
    const submitAllMs = nowMs() - tSubmit;
    const finished = await waitAll(ids, 240_000);
    const failed = [...finished.values()].filter((j) => j.state !== processingV1.JobState.SUCCEEDED);
    if (failed.length) throw new Error(`${failed.length} jobs did not succeed: ${failed[0]!.error?.message}`);
    const lastDone = Math.max(...[...finished.values()].map((j) => j.updatedAt!.getTime()));
    const created = [...finished.values()].map((j) => j.createdAt!.getTime());
    const wallS = (lastDone - submitWall) / 1000;
    // Time inside the consumer per job: its BullMQ generate stage job, processedOn → finishedOn.
    const stageMs: number[] = [];
    const queueWaitMs: number[] = [];
    for (const id of ids) {
      for (const q of ['inference', `inference@${NODE_ID}`]) {
        const [processedOn, finishedOn, timestamp] = await raw.hmget(
          `${PREFIX}:${q}:${id}.generate`,
          'processedOn',
          'finishedOn',
          'timestamp',
        );
        if (processedOn && finishedOn) {
          stageMs.push(Number(finishedOn) - Number(processedOn));
          queueWaitMs.push(Number(processedOn) - Number(timestamp));
          break;
        }
      }
    }
    const endToEndMs = ids.map(
      (id) => finished.get(id)!.updatedAt!.getTime() - finished.get(id)!.createdAt!.getTime(),
    );
    const throughput = {
      jobs: JOBS,
      steps: 1,
      size: '64x64',
      inferenceDevices: 1,
      stageConcurrency: 1,
      torchThreads: Number(THREADS),
      submitAllMs: Math.round(submitAllMs),
      wallS: Math.round(wallS * 1000) / 1000,
      jobsPerS: Math.round((JOBS / wallS) * 100) / 100,
      firstCreatedToLastDoneS: Math.round(((lastDone - Math.min(...created)) / 1000) * 1000) / 1000,
      stageInConsumer: stageMs.length ? stats(stageMs) : undefined,
      stageSumS: Math.round(stageMs.reduce((a, b) => a + b, 0)) / 1000,
      submitToSucceeded: stats(endToEndMs),
      modelLoadS: Math.round(loadS * 1000) / 1000,
    };
    log(
      `throughput: ${JOBS} jobs in ${throughput.wallS} s = ${throughput.jobsPerS} jobs/s; in consumer p50 ${throughput.stageInConsumer?.p50Ms} ms (sum ${throughput.stageSumS} s)`,
    );

    // ---- 4. cancel of running jobs ----
    const runningCancel: number[] = [];
    const runningCancelCall: number[] = [];
    const runningAnswered: string[] = [];
    const stepsSeen: number[] = [];
    const progressAfterCancel: number[] = [];
    const stageEndAfterCancel: number[] = [];
    for (let k = 0; k < CANCELS; k++) {
      const { job } = await call(one.submitJob, submitRequest(modelId, 5000 + k, RUNNING_STEPS));
      let step = 0;
      const r = await cancelVia(one, job!.id, (m) => {
        if (m.progress) step = m.progress.step;
        return !!m.progress;
      });
      stepsSeen.push(step);
      progressAfterCancel.push(r.progressAfter);
      // When the consumer gave the stage job up (BullMQ finishedOn, same clock), after the cancel call.
      for (const q of [`inference@${NODE_ID}`, 'inference']) {
        const [finishedOn] = await raw.hmget(`${PREFIX}:${q}:${job!.id}.generate`, 'finishedOn');
        if (finishedOn) {
          stageEndAfterCancel.push(Number(finishedOn) - r.cancelWall);
          break;
        }
      }
      runningCancel.push(r.toCancelledMs);
      runningCancelCall.push(r.callMs);
      runningAnswered.push(r.answeredState);
    }
    const runningStats = stats(runningCancel);
    log(`cancel RUNNING → CANCELLED on WatchJob: p50 ${runningStats.p50Ms} ms p90 ${runningStats.p90Ms}`);
    // One uncancelled job of the same size: how long a step takes here (what "within a step" means).
    const { job: full } = await call(one.submitJob, submitRequest(modelId, 9999, RUNNING_STEPS));
    const fullDone = (await waitAll([full!.id], 120_000)).get(full!.id)!;
    const [po, fo] = await raw.hmget(
      `${PREFIX}:inference@${NODE_ID}:${full!.id}.generate`,
      'processedOn',
      'finishedOn',
    );
    const [po2, fo2] = po
      ? [po, fo]
      : await raw.hmget(`${PREFIX}:inference:${full!.id}.generate`, 'processedOn', 'finishedOn');
    const fullStageMs = Number(fo2) - Number(po2);

    const cancel = {
      queued: {
        backlog,
        consumer: 'not started (jobs stay queued)',
        callToCancelledOnWatch: queuedStats,
        cancelJobCall: stats(queuedCancelCall),
        cancelJobAnsweredState: [...new Set(queuedAnswered)],
        bulkCancelRest: bulk,
      },
      running: {
        steps: RUNNING_STEPS,
        size: '64x64',
        cancelledAfterProgressStep: [...new Set(stepsSeen)],
        callToCancelledOnWatch: runningStats,
        cancelJobCall: stats(runningCancelCall),
        cancelJobAnsweredState: [...new Set(runningAnswered)],
        // Breakdown: cancel call → the consumer's stage job failed (BullMQ finishedOn, ms clock).
        callToStageJobFinished: stageEndAfterCancel.length ? stats(stageEndAfterCancel) : undefined,
        progressEventsAfterCancel: stats(progressAfterCancel),
        uncancelledJobStageMs: fullStageMs,
        uncancelledJobState: fullDone.state,
        perStepMsApprox: Math.round((fullStageMs / RUNNING_STEPS) * 10) / 10,
      },
    };

    const loadEnd = loadavg();
    log(`load average at end ${loadEnd.join(' ')}`);
    const ratios = {
      submitOverGetJobP50C1: +(enqueue.submitJobC1.p50Ms / enqueue.getJobC1.p50Ms).toFixed(2),
      submitOverGetJobP50C8: +(enqueue.submitJobC8.p50Ms / enqueue.getJobC8.p50Ms).toFixed(2),
      queuedCancelOverGetJobP50: +(queuedStats.p50Ms / enqueue.getJobC1.p50Ms).toFixed(2),
    };
    const m = machine();
    const result = {
      date: new Date().toISOString(),
      machine: m,
      loadAverage: { start: loadStart, end: loadEnd },
      setup: {
        services:
          'redis-server (no AOF) + model + processing + inference, each its own process (tsx), CPU backend',
        model: 'tools/fixtures/generated/sd15-tiny.safetensors',
        job: 'txt2img 64x64, cfg 7, safety off, no upscale → one generate stage',
        logLevel: 'info',
        torchThreads: Number(THREADS),
        n: N,
        concurrency: CONCURRENCY,
        benchWallS: Math.round((Date.now() - T0) / 100) / 10,
      },
      enqueue,
      throughput,
      cancel,
      ratios,
    };
    const out = path.resolve(__dirname, '../results');
    fs.mkdirSync(out, { recursive: true });
    fs.writeFileSync(path.join(out, `workflow-${HOST}.json`), JSON.stringify(result, null, 2) + '\n');
    const row = (k: string, s: Stats & { callsPerS?: number }) =>
      `| ${k} | ${s.n} | ${s.p50Ms} | ${s.p90Ms} | ${s.p99Ms} | ${s.maxMs} | ${s.callsPerS ?? ''} |`;
    const t = throughput;
    fs.writeFileSync(
      path.join(out, `workflow-${HOST}.md`),
      [
        `# Workflow: enqueue, throughput, cancel (${result.date.slice(0, 10)})`,
        '',
        `Machine: ${m.cpu}, ${m.logicalCores} logical cores, ${m.memGiB} GiB, Node ${m.node}, Redis ${m.redis}, ${m.platform}.`,
        `Load average (1/5/15 min) at start ${loadStart.join(' / ')}, at end ${loadEnd.join(' / ')} — the box is shared with other sessions, so absolute times are noisy.`,
        '',
        `Stack: ${result.setup.services}; log level info; Redis from startTestRedis (no AOF). Jobs: ${result.setup.job}, tiny sd15 fixture. Worker torch threads ${THREADS}. Reproduce: \`npx tsx tools/bench/workflow/bench-workflow.ts\` (${result.setup.benchWallS} s this run).`,
        '',
        `## 1. Enqueue latency (no consumer running)`,
        '',
        `Each client is its own gRPC channel making sequential calls; ${N} calls per row after 50 warm-up calls. Baseline: GetJob (gRPC + one Redis read) in the same run.`,
        '',
        '| call | n | p50 ms | p90 ms | p99 ms | max ms | calls/s |',
        '|---|---|---|---|---|---|---|',
        row('GetJob, 1 client (baseline)', enqueue.getJobC1),
        row('SubmitJob, 1 client', enqueue.submitJobC1),
        row(`GetJob, ${CONCURRENCY} clients (baseline)`, enqueue.getJobC8),
        row(`SubmitJob, ${CONCURRENCY} clients`, enqueue.submitJobC8),
        '',
        `Ratios (p50): SubmitJob / GetJob = ${ratios.submitOverGetJobP50C1} at 1 client, ${ratios.submitOverGetJobP50C8} at ${CONCURRENCY} clients.`,
        '',
        `## 2. End-to-end throughput (1-step jobs)`,
        '',
        `${t.jobs} txt2img jobs, 64×64, 1 step, submitted back to back by one client (${t.submitAllMs} ms to submit all), model preloaded on cpu:0 (load ${t.modelLoadS} s), 3 warm-up jobs first. Inference: 1 device (cpu:0) → stage concurrency 1.`,
        '',
        `- **${t.jobsPerS} jobs/s** — first submit → last SUCCEEDED (record updated_at) ${t.wallS} s.`,
        `- Time inside the consumer per job (BullMQ generate stage processedOn → finishedOn: model check, worker generate + PNG write, result): p50 ${t.stageInConsumer?.p50Ms} ms, p90 ${t.stageInConsumer?.p90Ms}, p99 ${t.stageInConsumer?.p99Ms}; sum ${t.stageSumS} s of the ${t.wallS} s wall (${Math.round((t.stageSumS / t.wallS) * 100)} %): with stage concurrency 1 the consumer is the bottleneck, jobs/s ≈ 1 / the time per job in it; the other ${Math.round((t.wallS - t.stageSumS) * 1000)} ms are the first pick-up and the last completion reaching the job record.`,
        `- Submit → SUCCEEDED per job (queueing included): p50 ${t.submitToSucceeded.p50Ms} ms, max ${t.submitToSucceeded.maxMs} ms.`,
        '',
        `## 3. Cancel latency (CancelJob call → CANCELLED job message on WatchJob)`,
        '',
        '| case | n | p50 ms | p90 ms | p99 ms | max ms | |',
        '|---|---|---|---|---|---|---|',
        row(`queued (backlog ${backlog}, no consumer)`, cancel.queued.callToCancelledOnWatch),
        row('queued: the CancelJob call itself', cancel.queued.cancelJobCall),
        row(
          `running (${RUNNING_STEPS} steps 64×64, after first progress)`,
          cancel.running.callToCancelledOnWatch,
        ),
        row('running: the CancelJob call itself', cancel.running.cancelJobCall),
        ...(cancel.running.callToStageJobFinished
          ? [
              row(
                'running: call → stage job failed in the consumer (BullMQ finishedOn)',
                cancel.running.callToStageJobFinished,
              ),
            ]
          : []),
        '',
        `The running-cancel row is the consumer's: from the call to the stage job failing takes about ${cancel.running.callToStageJobFinished?.p50Ms ?? '?'} ms (p50) of the ${runningStats.p50Ms} ms; processing turning that into CANCELLED on WatchJob adds the rest.

CancelJob answered ${cancel.queued.cancelJobAnsweredState.join('/')} for queued jobs and ${cancel.running.cancelJobAnsweredState.join('/')} for running ones (a running job becomes CANCELLED when its stage aborts). An uncancelled ${RUNNING_STEPS}-step job took ${fullStageMs} ms in the consumer (≈ ${cancel.running.perStepMsApprox} ms per step); progress events seen on WatchJob after the cancel call: p50 ${cancel.running.progressEventsAfterCancel.p50Ms}, max ${cancel.running.progressEventsAfterCancel.maxMs}. Bulk CancelJob of the remaining ${rest.length} queued jobs at ${CONCURRENCY} clients: p50 ${bulk.p50Ms} ms, ${bulk.callsPerS}/s.`,
        '',
      ].join('\n'),
    );
    log(`wrote ${path.join(out, `workflow-${HOST}`)}.{json,md}`);
  } finally {
    raw.disconnect();
    for (const c of clients) c.close();
    models.close();
  }
}

main()
  .catch((err: unknown) => {
    process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
    for (const p of procs)
      process.stderr.write(
        `--- ${p.child.spawnargs.join(' ')} (last 3000 chars)\n${p.output().slice(-3000)}\n`,
      );
    process.exitCode = 1;
  })
  .finally(async () => {
    await cleanup();
    log('all processes stopped');
  });
