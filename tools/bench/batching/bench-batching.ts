// Dynamic batching on CPU with the tiny SD 1.5 fixture: 8 concurrent compatible generations
// through the inference Generator and its device lane, batching off (maxBatch 1) vs on
// (maxBatch 4 by default), interleaved round by round, as a throughput ratio from the same run;
// then the cost of cancelling a waiting and a running generation (time to the rejection, worker
// restarts). Two workers (one per side) on the same cores, never running at the same time.
// Writes tools/bench/results/batching-<host>.{json,md}.
//   npx tsx tools/bench/batching/bench-batching.ts [--rounds 5] [--jobs 8] [--batch 4] [--steps 4] [--size 64]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Generator, InferenceModels } from '@dops/inference';
import { inferenceV1 } from '@dops/proto';
import { inferenceWorkerProcess } from '@dops/testing';
import { WorkerPool } from '@dops/worker-pool';
import { silentLogger as silent } from '@dops/worker-supervisor';

function arg(name: string, fallback: string): number {
  const i = process.argv.indexOf(`--${name}`);
  return Number(i > 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback);
}
const rounds = arg('rounds', '5');
const jobs = arg('jobs', '8');
const maxBatch = arg('batch', '4');
const steps = arg('steps', '4');
const size = arg('size', '64');

const REPO_ROOT = path.resolve(__dirname, '../../..');
const FIXTURES = path.join(REPO_ROOT, 'tools/fixtures/generated');

interface Side {
  label: string;
  pool: WorkerPool;
  models: InferenceModels;
  generator: Generator;
}

async function side(label: string, batch: number, root: string): Promise<Side> {
  const pool = new WorkerPool({
    name: `batching-${label}`,
    backend: 'cpu',
    logger: silent,
    supervisor: {
      ...inferenceWorkerProcess({
        artifactRoot: path.join(root, 'artifacts'),
        inputRoot: path.join(root, 'inputs'),
        modelRoots: FIXTURES,
      }),
      handshakeTimeoutMs: 60_000,
      requestTimeoutMs: 300_000,
      heartbeatIntervalMs: 60_000,
    },
  });
  await pool.start();
  const models = new InferenceModels(pool, silent, { lane: { maxBatch: batch, batchWaitMs: 25 } });
  await models.load('sd15', path.join(FIXTURES, 'sd15-tiny.safetensors'), 'cpu:0', 'vram', {
    configDir: path.join(FIXTURES, 'configs'),
  });
  const generator = new Generator(models, { inputRoot: path.join(root, 'inputs'), modelRoots: [FIXTURES] });
  return { label, pool, models, generator };
}

const params = (i: number) =>
  inferenceV1.GenerationParams.fromPartial({
    modelId: 'sd15',
    mode: inferenceV1.Mode.TXT2IMG,
    prompt: `a lighthouse on a cliff, variation ${i}`,
    width: size,
    height: size,
    steps,
    seed: 1000 + i,
    scheduler: 'Euler',
  });

/** Seconds for `jobs` concurrent generations. */
async function burst(s: Side): Promise<number> {
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: jobs }, (_, i) => s.generator.generate({ params: params(i) })));
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

/** Time from cancel to the rejection of a waiting / a running generation, and the worker's restarts meanwhile. */
async function cancels(s: Side): Promise<Record<string, number>> {
  const restarts = () => s.pool.get('cpu:0').supervisor.health().restarts;
  const before = restarts();
  const long = inferenceV1.GenerationParams.fromPartial({ ...params(99), steps: steps * 10 });
  const running = new AbortController();
  const first = s.generator.generate({ params: long, signal: running.signal }).catch((e: unknown) => e);
  await new Promise((r) => setTimeout(r, 300));
  const waiting = new AbortController();
  const second = s.generator
    .generate({ params: params(98), signal: waiting.signal })
    .catch((e: unknown) => e);
  await new Promise((r) => setTimeout(r, 100));
  let t = process.hrtime.bigint();
  waiting.abort(new Error('cancelled'));
  await second;
  const waitingMs = Number(process.hrtime.bigint() - t) / 1e6;
  t = process.hrtime.bigint();
  running.abort(new Error('cancelled'));
  await first;
  const runningMs = Number(process.hrtime.bigint() - t) / 1e6;
  // The next request runs at once on the same worker.
  await s.generator.generate({ params: params(97) });
  return {
    waitingCancelMs: Math.round(waitingMs * 10) / 10,
    runningCancelMs: Math.round(runningMs * 10) / 10,
    workerRestarts: restarts() - before,
  };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<void> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'dops-bench-batching-'));
  const off = await side('off', 1, root);
  const on = await side('on', maxBatch, root);
  try {
    await burst(off);
    await burst(on); // warm-up of both
    const samples: { off: number; on: number; ratio: number }[] = [];
    for (let r = 0; r < rounds; r++) {
      // Interleaved: which side goes first alternates.
      const [a, b] = r % 2 ? [on, off] : [off, on];
      const ta = await burst(a);
      const tb = await burst(b);
      const tOff = a === off ? ta : tb;
      const tOn = a === on ? ta : tb;
      samples.push({ off: jobs / tOff, on: jobs / tOn, ratio: tOff / tOn });
      process.stdout.write(
        `round ${r + 1}: off ${(jobs / tOff).toFixed(2)} jobs/s, on ${(jobs / tOn).toFixed(2)} jobs/s, ×${(tOff / tOn).toFixed(2)}\n`,
      );
    }
    const cancel = await cancels(on);
    const result = {
      host: os.hostname(),
      cpus: os.cpus().length,
      settings: { rounds, jobs, maxBatch, steps, size },
      jobsPerSecond: { off: median(samples.map((s) => s.off)), on: median(samples.map((s) => s.on)) },
      medianRatioOnOverOff: median(samples.map((s) => s.ratio)),
      rounds: samples,
      cancel,
    };
    const out = path.join(REPO_ROOT, 'tools/bench/results');
    fs.mkdirSync(out, { recursive: true });
    fs.writeFileSync(path.join(out, 'batching-cpu.json'), `${JSON.stringify(result, null, 2)}\n`);
    fs.writeFileSync(
      path.join(out, 'batching-cpu.md'),
      [
        `# Dynamic batching on CPU (${result.cpus} cores, tiny SD 1.5, ${size}², ${steps} steps)`,
        '',
        `${jobs} concurrent compatible generations, batching off (maxBatch 1) vs on (maxBatch ${maxBatch}), ${rounds} interleaved rounds.`,
        '',
        `| | jobs/s (median) |`,
        `|---|---|`,
        `| off | ${result.jobsPerSecond.off.toFixed(2)} |`,
        `| on | ${result.jobsPerSecond.on.toFixed(2)} |`,
        '',
        `Median ratio on ÷ off (per round): **×${result.medianRatioOnOverOff.toFixed(2)}**.`,
        '',
        `Cancel of a waiting generation: ${cancel.waitingCancelMs} ms to its rejection; of a running one: ${cancel.runningCancelMs} ms; worker restarts: ${cancel.workerRestarts}.`,
        '',
        'Command: `npx tsx tools/bench/batching/bench-batching.ts`',
        '',
      ].join('\n'),
    );
    process.stdout.write(
      `${JSON.stringify(result.jobsPerSecond)} ratio ×${result.medianRatioOnOverOff.toFixed(2)} cancel ${JSON.stringify(cancel)}\n`,
    );
  } finally {
    await Promise.all([off.pool.stop(), on.pool.stop()]);
    fs.rmSync(root, { recursive: true, force: true });
  }
}

void main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
