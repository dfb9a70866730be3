// A cold model load through the stack as a queued job now gets it — NodeLoader in inference asks the
// model service's GetModel (a real ModelRegistry over a fresh copy of the file, hashing in the
// background) and the memory service's Reserve (a real ReservationLedger) over gRPC, then loads
// through the device's lane into a real Python worker (cpu) — against a plain diffusers
// `from_single_file` of the same file (plain_load.py), as a ratio. Each timed stack load starts
// with the model dropped from the worker (RAM tier too) and its reservation released, so the
// worker reads and builds it from the file (page cache warm on both sides). The two sides run one
// after the other, never sharing the cores.
// Writes tools/bench/results/cold_load-<DOPS_BENCH_LABEL, default cpu>.{json,md}.
//   npx tsx tools/bench/cold_load/bench-cold-load.ts [--n 10] [--warmup 2] [--threads 1]
//     [--backend cpu|cuda] [--model <file.safetensors> --config-dir <its diffusers config folder>]
// With --model the file's own folder is the model root (no copy) and the worker builds it from its
// shipped configs; plain_load.py then loads fp16 onto the device on cuda, as the worker does.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { GrpcModelIdentities, InferenceModels, NodeLoader, type ModelIdentities } from '@dops/inference';
import { ReservationLedger, reservationService } from '@dops/memory';
import { GrpcModelHosts, ModelLoader, ModelRegistry, modelService } from '@dops/model';
import { GrpcReservations, type Reservations } from '@dops/model-host';
import { INFERENCE_WORKER_MAIN, startTestServer, testCredentials } from '@dops/testing';
import { WorkerPool } from '@dops/worker-pool';
import { resolvePythonExecutable, silentLogger } from '@dops/worker-supervisor';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}
const n = Number(arg('n', '10'));
const warmup = Number(arg('warmup', '2'));
// One torch thread on both sides by default: on a small shared box more threads than free cores
// make both sides slower and far noisier (see tools/bench/overhead).
const threads = arg('threads', '1');
const backend = arg('backend', 'cpu');
const customModel = process.argv.includes('--model');

const REPO_ROOT = path.resolve(__dirname, '../../..');
const FIXTURES = path.join(REPO_ROOT, 'tools/fixtures/generated');
const CHECKPOINT = path.resolve(arg('model', path.join(FIXTURES, 'sd15-tiny.safetensors')));
const PLAIN_CONFIG_DIR = path.resolve(arg('config-dir', path.join(FIXTURES, 'configs/sd15')));
const PYTHON_WORKERS = path.join(REPO_ROOT, 'python-workers');
const python = resolvePythonExecutable({ repoRoot: REPO_ROOT });
const childEnv = {
  ...process.env,
  DOPS_BACKEND: backend,
  HF_HUB_OFFLINE: '1',
  OMP_NUM_THREADS: threads,
  MKL_NUM_THREADS: threads,
  PYTHONPATH: path.join(PYTHON_WORKERS, 'src'),
};

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

/** Seconds spent in each call of an object's methods, by method. */
function timed<T extends object>(target: T, into: Record<string, number[]>): T {
  return new Proxy(target, {
    get(object, key, receiver) {
      const value = Reflect.get(object, key, receiver) as unknown;
      if (typeof value !== 'function' || key === 'close') return value;
      return async (...args: unknown[]) => {
        const started = performance.now();
        try {
          return await (value as (...a: unknown[]) => Promise<unknown>).apply(object, args);
        } finally {
          (into[String(key)] ??= []).push((performance.now() - started) / 1000);
        }
      };
    },
  });
}

async function timeStack(root: string) {
  const modelRoot = customModel ? path.dirname(CHECKPOINT) : path.join(root, 'models');
  if (!customModel) {
    fs.mkdirSync(modelRoot, { recursive: true });
    // A fresh copy: the registry has never hashed it, as with a file dropped onto a node.
    fs.copyFileSync(CHECKPOINT, path.join(modelRoot, 'bench.safetensors'));
    fs.cpSync(path.join(FIXTURES, 'configs'), path.join(modelRoot, 'configs'), { recursive: true });
  }
  const modelPath = customModel ? CHECKPOINT : path.join(modelRoot, 'bench.safetensors');
  const registry = new ModelRegistry({
    roots: [modelRoot],
    statePath: path.join(root, 'state.json'),
    watch: false,
    pollIntervalMs: 0,
  });
  await registry.start();
  const entry = await registry.getByPath(modelPath);
  const hashedAtFirstLoad = entry.hashes !== undefined;
  const credentials = testCredentials('inference', 'mtls');
  const hostsNeverUsed = new GrpcModelHosts({}, credentials);
  const modelLoader = new ModelLoader({ registry, hosts: hostsNeverUsed });
  const ledger = new ReservationLedger({ capacityOf: () => 64 * 1024 ** 3 });
  const server = await startTestServer([modelService(registry, modelLoader), reservationService(ledger)]);
  const pool = new WorkerPool({
    name: 'cold-load-bench',
    backend: 'cpu',
    logger: silentLogger,
    supervisor: {
      command: python,
      args: ['-c', INFERENCE_WORKER_MAIN],
      cwd: PYTHON_WORKERS,
      env: {
        ...childEnv,
        DOPS_ARTIFACT_ROOT: path.join(root, 'artifacts'),
        DOPS_INPUT_ROOT: path.join(root, 'inputs'),
        DOPS_MODEL_ROOTS: modelRoot,
      },
      handshakeTimeoutMs: 60_000,
      requestTimeoutMs: 300_000,
      heartbeatIntervalMs: 60_000,
    },
  });
  await pool.start();
  const calls: Record<string, number[]> = {};
  const identities: ModelIdentities = timed(new GrpcModelIdentities(server.address, credentials), calls);
  const reservations: Reservations = timed(new GrpcReservations(server.address, credentials), calls);
  const models = new InferenceModels(pool, silentLogger);
  const loader = new NodeLoader(models, pool, {
    identities,
    reservations,
    modelRoots: [modelRoot],
    // The tiny fixture's own configs; a real model is built from the worker's shipped ones.
    configDir: customModel ? undefined : path.join(modelRoot, 'configs'),
    hashPollMs: 0,
  });
  const DEVICE = pool.list()[0]!.device.id;
  const loads: number[] = [];
  try {
    for (let i = 0; i < warmup + n; i += 1) {
      if (models.heldOn(entry.id, DEVICE)) await models.unload(entry.id, DEVICE, 'ram');
      await reservations.release({ deviceId: DEVICE, modelId: entry.id });
      if (i === warmup) for (const key of Object.keys(calls)) calls[key] = [];
      const started = performance.now();
      await loader.ensureOnVram(entry.id);
      if (i >= warmup) loads.push((performance.now() - started) / 1000);
    }
  } finally {
    loader.close();
    await pool.stop();
    await server.stop();
    modelLoader.close();
    hostsNeverUsed.close();
    await registry.close();
  }
  return {
    loads,
    getModel: stats(calls['identify'] ?? []),
    reserve: stats(calls['reserve'] ?? []),
    hashedAtFirstLoad,
  };
}

function timePlain(): { loads: number[]; versions: Record<string, unknown> } {
  const out = execFileSync(
    python,
    [
      path.join(__dirname, 'plain_load.py'),
      '--model',
      CHECKPOINT,
      '--config-dir',
      PLAIN_CONFIG_DIR,
      '--device',
      backend === 'cpu' ? 'cpu' : 'cuda',
      '--n',
      String(n),
      '--warmup',
      String(warmup),
    ],
    { env: childEnv, maxBuffer: 16 * 1024 * 1024, stdio: ['ignore', 'pipe', 'inherit'] },
  ).toString();
  const { loads, ...versions } = JSON.parse(out.trim().split('\n').pop()!) as {
    loads: number[];
  } & Record<string, unknown>;
  return { loads, versions };
}

async function main(): Promise<void> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'dops-cold-load-'));
  const startedAt = new Date();
  const load1 = os.loadavg()[0]!;
  try {
    const stack = await timeStack(root);
    const plain = timePlain();
    const stackStats = stats(stack.loads);
    const plainStats = stats(plain.loads);
    const ratio = Math.round((stackStats.medianS / plainStats.medianS) * 1000) / 1000;
    const hostName = process.env['DOPS_BENCH_LABEL'] ?? 'cpu';
    const doc = {
      benchmark: 'cold_load',
      date: startedAt.toISOString(),
      machine: {
        cpus: `${os.cpus()[0]?.model ?? '?'} × ${os.cpus().length}`,
        memGiB: Math.round(os.totalmem() / 1024 ** 3),
        node: process.version,
        loadAvg1Before: load1,
        loadAvg1After: os.loadavg()[0],
        ...plain.versions,
      },
      model: path.basename(CHECKPOINT),
      threads: Number(threads),
      backend,
      warmup,
      stack: { load: stackStats, getModel: stack.getModel, reserve: stack.reserve },
      plain: { load: plainStats },
      ratioStackOverPlain: ratio,
      hashedAtFirstLoad: stack.hashedAtFirstLoad,
      samples: { stack: stack.loads, plain: plain.loads },
    };
    const out = path.resolve(__dirname, '../results');
    fs.mkdirSync(out, { recursive: true });
    fs.writeFileSync(path.join(out, `cold_load-${hostName}.json`), JSON.stringify(doc, null, 2) + '\n');
    const ms = (s: Stats) => `${(s.medianS * 1000).toFixed(1)} / ${(s.p90S * 1000).toFixed(1)}`;
    const md = [
      `# Cold model load: through the stack vs plain diffusers (${startedAt.toISOString().slice(0, 10)})`,
      '',
      `Machine: ${doc.machine.cpus}, ${doc.machine.memGiB} GiB RAM; Node ${process.version}, Python ${String(plain.versions['python'])}, torch ${String(plain.versions['torch'])}, diffusers ${String(plain.versions['diffusers'])}, torch threads ${threads}. 1-min load average ${load1.toFixed(2)} before, ${os.loadavg()[0]!.toFixed(2)} after (shared box: the two sides ran back to back).`,
      '',
      `Model: ${doc.model} (${customModel ? 'given file' : 'tiny SD 1.5, float32'}, backend ${backend}). n = ${n} timed loads per side after ${warmup} warm-up loads; page cache warm.`,
      '',
      '- **stack**: `NodeLoader.ensureOnVram` as a queued job calls it: GetModel over gRPC (a real registry; the file is a fresh copy, hashed in the background), Reserve over gRPC (a real reservation ledger), then `model.load` through the device lane into the Python worker (project loader: read, build, to device). Before each, the model is dropped from the worker (RAM tier too) and its reservation released.',
      '- **plain**: `<pipeline class of the config folder>.from_single_file(file, config=<config folder>, tokenizer=<shipped CLIP>)` in one Python process, a fresh pipeline each time (fp16 and moved to the GPU on cuda).',
      '',
      '| side | median / p90 ms | min ms |',
      '|---|---|---|',
      `| stack (cold load) | ${ms(stackStats)} | ${(stackStats.minS * 1000).toFixed(1)} |`,
      `| — of which GetModel | ${ms(stack.getModel)} | ${(stack.getModel.minS * 1000).toFixed(1)} |`,
      `| — of which Reserve | ${ms(stack.reserve)} | ${(stack.reserve.minS * 1000).toFixed(1)} |`,
      `| plain diffusers | ${ms(plainStats)} | ${(plainStats.minS * 1000).toFixed(1)} |`,
      '',
      `**Ratio stack / plain (medians): ${ratio}.** The registry had ${stack.hashedAtFirstLoad ? 'already' : 'not yet'} hashed the file when the first load asked for it; no load waited for a hash.`,
      '',
      'Reproduce: `npx tsx tools/bench/cold_load/bench-cold-load.ts [--n 10] [--warmup 2] [--threads 1]`',
      '',
    ].join('\n');
    fs.writeFileSync(path.join(out, `cold_load-${hostName}.md`), md);
    process.stdout.write(md);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${String((err as Error).stack ?? err)}\n`);
  process.exit(1);
});
