// Overhead of the whole gRPC → inference service → worker path over calling the same diffusers
// pipeline directly in Python (direct.py), for the same request, as a ratio. Starts the inference
// service + ModelHostService in-process over a real WorkerPool (cpu backend) on port 0, loads the
// tiny SD 1.5 fixture through ModelHostService, times unary Generate calls, stops the pool, then
// runs direct.py (same loader, same pipeline, same request) so the two never share the cores.
// Writes tools/bench/results/overhead-<host>.{json,md}.
//   npx tsx tools/bench/overhead/overhead.ts [--n 15] [--warmup 2] [--threads 1] [--with-generate]
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { call, createClient } from '@dops/grpc-client';
import { Generator, InferenceModels, inferenceService } from '@dops/inference';
import { modelHostService } from '@dops/model-host';
import { inferenceV1, modelHostV1, modelV1 } from '@dops/proto';
import { startTestServer, testCredentials, INFERENCE_WORKER_MAIN } from '@dops/testing';
import { WorkerPool } from '@dops/worker-pool';
import { resolvePythonExecutable, type SupervisorLogger } from '@dops/worker-supervisor';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}
const n = Number(arg('n', '15'));
const warmup = Number(arg('warmup', '2'));
// Torch intra-op threads for both sides (worker and direct.py get the same environment). 1 by
// default: on a small shared box, OpenMP spin-waiting with more threads than free cores makes
// both sides many times slower and far noisier.
const threads = arg('threads', '1');
const withGenerate = process.argv.includes('--with-generate');

const REPO_ROOT = path.resolve(__dirname, '../../..');
const FIXTURES = path.join(REPO_ROOT, 'tools/fixtures/generated');
const CHECKPOINT = path.join(FIXTURES, 'sd15-tiny.safetensors');
const CONFIGS = path.join(FIXTURES, 'configs');
const PYTHON_WORKERS = path.join(REPO_ROOT, 'python-workers');
const MODEL_ID = 'sd15-tiny';
const DEVICE_ID = 'cpu:0';

interface Case {
  label: string;
  prompt: string;
  negativePrompt: string;
  width: number;
  height: number;
  steps: number;
  cfgScale: number;
  seed: number;
  scheduler: string;
}
const PROMPT = 'a lighthouse on a cliff at dawn';
const common = { prompt: PROMPT, negativePrompt: 'blurry', cfgScale: 7, seed: 42, scheduler: 'Euler a' };
const CASES: Case[] = [
  { label: 'small (overhead-dominated)', ...common, width: 64, height: 64, steps: 4 },
  {
    label: 'large (diffusion-dominated)',
    ...common,
    width: Number(arg('large-size', '96')),
    height: Number(arg('large-size', '96')),
    steps: Number(arg('large-steps', '8')),
  },
];

interface Stats {
  n: number;
  medianS: number;
  p90S: number;
  minS: number;
  maxS: number;
}
function stats(samples: number[]): Stats {
  const s = [...samples].sort((a, b) => a - b);
  const mid = s.length / 2;
  const median = s.length % 2 ? s[Math.floor(mid)]! : (s[mid - 1]! + s[mid]!) / 2;
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
  const r = (x: number) => Math.round(x * 1e5) / 1e5;
  return { n: s.length, medianS: r(median), p90S: r(q(0.9)), minS: r(s[0]!), maxS: r(s[s.length - 1]!) };
}

const silent: SupervisorLogger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: (fields, msg) => process.stderr.write(`worker error: ${msg ?? ''} ${JSON.stringify(fields)}\n`),
  child: () => silent,
};

const python = resolvePythonExecutable({ repoRoot: REPO_ROOT });
const childEnv = {
  ...process.env,
  DOPS_BACKEND: 'cpu',
  HF_HUB_OFFLINE: '1',
  OMP_NUM_THREADS: threads,
  MKL_NUM_THREADS: threads,
  PYTHONPATH: path.join(PYTHON_WORKERS, 'src'),
};

interface ServiceCase {
  generate: Stats;
  /** What the worker itself reports: denoise+decode, and PNG write (medians). */
  workerGenerateS: number;
  workerWriteS: number;
  sha256: string;
}

async function timeService(root: string): Promise<{ loadS: number; cases: ServiceCase[] }> {
  const pool = new WorkerPool({
    name: 'overhead-bench',
    backend: 'cpu',
    logger: silent,
    supervisor: {
      command: python,
      args: ['-c', INFERENCE_WORKER_MAIN],
      cwd: PYTHON_WORKERS,
      env: {
        ...childEnv,
        DOPS_ARTIFACT_ROOT: path.join(root, 'artifacts'),
        DOPS_INPUT_ROOT: path.join(root, 'inputs'),
      },
      handshakeTimeoutMs: 60_000,
      requestTimeoutMs: 300_000,
      cancelGraceMs: 5_000,
      shutdownTimeoutMs: 5_000,
      stdinCloseTimeoutMs: 2_000,
      sigtermTimeoutMs: 2_000,
      drainTimeoutMs: 2_000,
      heartbeatIntervalMs: 60_000,
    },
  });
  await pool.start();
  const host = new InferenceModels(pool);
  const generator = new Generator(host, { inputRoot: path.join(root, 'inputs'), modelRoots: [FIXTURES] });
  const server = await startTestServer([
    inferenceService(generator, host),
    modelHostService(host, { modelRoots: [FIXTURES], configDir: CONFIGS }),
  ]);
  const client = createClient(inferenceV1.InferenceServiceClient, server.address, {
    credentials: testCredentials('ops'),
  });
  const hostClient = createClient(modelHostV1.ModelHostServiceClient, server.address, {
    credentials: testCredentials('model', 'mtls'),
  });
  try {
    const t0 = process.hrtime.bigint();
    await call(
      hostClient.loadModel,
      {
        modelId: MODEL_ID,
        path: CHECKPOINT,
        deviceId: DEVICE_ID,
        tier: modelV1.Tier.VRAM,
        configDir: '',
      },
      { deadlineMs: 300_000 },
    );
    const loadS = Number(process.hrtime.bigint() - t0) / 1e9;
    const cases: ServiceCase[] = [];
    for (const c of CASES) {
      const params = inferenceV1.GenerationParams.fromPartial({
        modelId: MODEL_ID,
        mode: inferenceV1.Mode.TXT2IMG,
        prompt: c.prompt,
        negativePrompt: c.negativePrompt,
        width: c.width,
        height: c.height,
        steps: c.steps,
        cfgScale: c.cfgScale,
        seed: c.seed,
        batchCount: 1,
        scheduler: c.scheduler,
      });
      const once = () => call(client.generate, { params, deviceId: '' }, { deadlineMs: 300_000 });
      for (let i = 0; i < warmup; i += 1) await once();
      const samples: number[] = [];
      const gen: number[] = [];
      const write: number[] = [];
      let sha256 = '';
      for (let i = 0; i < n; i += 1) {
        const t = process.hrtime.bigint();
        const { result } = await once();
        samples.push(Number(process.hrtime.bigint() - t) / 1e9);
        gen.push(result!.timings!.generateSeconds);
        write.push(result!.timings!.writeSeconds);
        sha256 = result!.images[0]!.artifact!.sha256;
      }
      const s = stats(samples);
      process.stdout.write(
        `service ${c.width}x${c.height} ${c.steps} steps   median ${(s.medianS * 1000).toFixed(1)} ms  p90 ${(s.p90S * 1000).toFixed(1)} ms\n`,
      );
      cases.push({
        generate: s,
        workerGenerateS: stats(gen).medianS,
        workerWriteS: stats(write).medianS,
        sha256,
      });
    }
    return { loadS, cases };
  } finally {
    client.close();
    hostClient.close();
    await server.stop();
    await pool.stop();
  }
}

interface DirectCase {
  pipe: Stats;
  pipePng: Stats;
  generate?: Stats;
  pipePngSha256: string;
}
interface DirectOut {
  python: string;
  torch: string;
  diffusers: string;
  torchThreads: number;
  loadS: number;
  cases: DirectCase[];
}

function timeDirect(root: string): DirectOut {
  const cases = CASES.map(({ label: _label, ...c }) => c);
  const stdout = execFileSync(
    python,
    [
      path.join(__dirname, 'direct.py'),
      '--model',
      CHECKPOINT,
      '--config-dir',
      CONFIGS,
      '--model-id',
      MODEL_ID,
      '--n',
      String(n),
      '--warmup',
      String(warmup),
      '--out-dir',
      path.join(root, 'direct'),
      '--cases',
      JSON.stringify(cases),
      ...(withGenerate ? ['--with-generate'] : []),
    ],
    { env: childEnv, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 16 << 20 },
  );
  return JSON.parse(stdout.trim().split('\n').pop()!) as DirectOut;
}

async function main(): Promise<void> {
  if (!fs.existsSync(CHECKPOINT)) {
    throw new Error(
      `missing ${CHECKPOINT}: HF_HUB_OFFLINE=1 .venv/bin/python tools/fixtures/generate.py --out tools/fixtures/generated`,
    );
  }
  const started = Date.now();
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'dops-overhead-'));
  const loadBefore = os.loadavg();
  try {
    const service = await timeService(root);
    const direct = timeDirect(root);
    const loadAfter = os.loadavg();
    const machine = {
      cpu: os.cpus()[0]?.model,
      logicalCores: os.cpus().length,
      memGiB: Math.round(os.totalmem() / 2 ** 30),
      loadAvg1mBefore: +loadBefore[0]!.toFixed(2),
      loadAvg1mAfter: +loadAfter[0]!.toFixed(2),
      node: process.version,
      python: direct.python,
      torch: direct.torch,
      diffusers: direct.diffusers,
      torchThreads: direct.torchThreads,
      platform: `${os.platform()} ${os.release()}`,
    };
    const results = CASES.map((c, i) => {
      const s = service.cases[i]!;
      const d = direct.cases[i]!;
      const ms = (x: number) => Math.round(x * 1e4) / 10;
      return {
        case: c.label,
        request: {
          prompt: c.prompt,
          negativePrompt: c.negativePrompt,
          width: c.width,
          height: c.height,
          steps: c.steps,
          cfgScale: c.cfgScale,
          seed: c.seed,
          scheduler: c.scheduler,
        },
        service: s.generate,
        serviceWorkerReported: { generateS: s.workerGenerateS, writeS: s.workerWriteS },
        directPipe: d.pipe,
        directPipePng: d.pipePng,
        ...(d.generate ? { directWorkerGenerateInProcess: d.generate } : {}),
        sameImage: s.sha256 === d.pipePngSha256,
        overheadMs: {
          vsPipePng: ms(s.generate.medianS - d.pipePng.medianS),
          vsPipe: ms(s.generate.medianS - d.pipe.medianS),
        },
        ratio: {
          serviceOverPipePng: +(s.generate.medianS / d.pipePng.medianS).toFixed(3),
          serviceOverPipe: +(s.generate.medianS / d.pipe.medianS).toFixed(3),
          p90ServiceOverPipePng: +(s.generate.p90S / d.pipePng.p90S).toFixed(3),
        },
      };
    });
    const out = path.resolve(__dirname, '../results');
    fs.mkdirSync(out, { recursive: true });
    const hostName = process.env['BENCH_HOST'] ?? 'cpu';
    const totalS = Math.round((Date.now() - started) / 100) / 10;
    const doc = {
      date: new Date().toISOString(),
      machine,
      settings: {
        n,
        warmup,
        threads: Number(threads),
        modelId: MODEL_ID,
        checkpoint: 'tools/fixtures/generated/sd15-tiny.safetensors',
      },
      modelLoadS: { serviceLoadModelRpc: +service.loadS.toFixed(3), direct: direct.loadS },
      results,
      totalS,
    };
    fs.writeFileSync(path.join(out, `overhead-${hostName}.json`), JSON.stringify(doc, null, 2) + '\n');
    const ms = (x: number) => (x * 1000).toFixed(1);
    const rows = results.map(
      (r) =>
        `| ${r.request.width}×${r.request.height}, ${r.request.steps} steps | ${ms(r.service.medianS)} / ${ms(r.service.p90S)} | ${ms(r.directPipePng.medianS)} / ${ms(r.directPipePng.p90S)} | ${ms(r.directPipe.medianS)} / ${ms(r.directPipe.p90S)} | ${r.overheadMs.vsPipePng} | **${r.ratio.serviceOverPipePng}** | ${r.ratio.serviceOverPipe} | ${ms(r.serviceWorkerReported.generateS + r.serviceWorkerReported.writeS)} | ${r.sameImage ? 'yes' : 'no'} |`,
    );
    fs.writeFileSync(
      path.join(out, `overhead-${hostName}.md`),
      [
        `# Overhead of gRPC → inference service → worker over the same pipeline called directly (${doc.date.slice(0, 10)})`,
        '',
        `Machine: ${machine.cpu}, ${machine.logicalCores} logical cores, ${machine.memGiB} GiB RAM, ${machine.platform}; Node ${machine.node}, Python ${machine.python}, torch ${machine.torch}, diffusers ${machine.diffusers}, torch threads ${machine.torchThreads} (OMP_NUM_THREADS=${threads} on both sides). 1-min load average ${machine.loadAvg1mBefore} before, ${machine.loadAvg1mAfter} after (the box is shared: absolute times are noisy, the two sides ran back to back).`,
        '',
        `Model: tiny SD 1.5 fixture (sd15-tiny.safetensors, float32, cpu), loaded by the project loader on both sides. Request: txt2img "${PROMPT}", negative "blurry", cfg 7, Euler a, seed 42, 1 image. n = ${n} timed runs after ${warmup} warm-up runs, per side and case; sequential, one in flight.`,
        '',
        '- **service**: unary `InferenceService.Generate` over gRPC (127.0.0.1, in-process server) → Generator → WorkerPool → Python worker over stdio → PNG written; wall time at the client.',
        "- **direct + PNG**: `direct.py`, same assembled diffusers pipeline, `pipe(...)` with the worker's arguments, then the worker's PNG writer (same metadata, fsync + rename). Ran after the pool was stopped.",
        '- **direct pipe**: `pipe(...)` only, no PNG.',
        '',
        '| request | service median / p90 ms | direct+PNG median / p90 ms | direct pipe median / p90 ms | overhead ms (vs direct+PNG) | ratio service / direct+PNG | ratio service / pipe | worker-reported generate+write ms | same PNG bytes |',
        '|---|---|---|---|---|---|---|---|---|',
        ...rows,
        '',
        `Model load: LoadModel RPC ${service.loadS.toFixed(2)} s; direct ${direct.loadS.toFixed(2)} s. Whole run ${totalS} s.`,
        '',
        'Reproduce: `npx tsx tools/bench/overhead/overhead.ts [--n 15] [--warmup 2] [--threads 1] [--large-size 96] [--large-steps 8] [--with-generate]`',
        '',
      ].join('\n'),
    );
    process.stdout.write(fs.readFileSync(path.join(out, `overhead-${hostName}.md`), 'utf8'));
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(
    `overhead bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});
