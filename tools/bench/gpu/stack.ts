// The "stack" side of tools/bench/gpu: gRPC Generate → inference service → device lane → Python
// worker, driven by bench_gpu.py over NDJSON on stdin/stdout (one command per line, one JSON
// reply per line). Starts the inference service + ModelHostService in-process over a real
// WorkerPool (DOPS_BENCH_BACKEND, default cuda) on a gRPC server on port 0, as
// tools/bench/overhead does, and keeps it up between commands so the Python side can interleave
// its own runs with these round by round. Bundled with esbuild (package.sh) to run where there
// is only a Node binary; `npx tsx tools/bench/gpu/stack.ts` runs it from the tree.
//
// Commands: {cmd:'load', modelId, path, configDir, tier?} → {loadS, source}
//           {cmd:'unload', modelId, tier} → {unloadS}
//           {cmd:'gen', params} → {wallS, generateS, writeS, paths}
//           {cmd:'concurrent', params, clients, requests} → {wallS, perRequestS: [...], images}
//           {cmd:'quit'}
import * as path from 'node:path';
import * as readline from 'node:readline';
import { call, createClient } from '@dops/grpc-client';
import { Generator, InferenceModels, inferenceService } from '@dops/inference';
import { modelHostService } from '@dops/model-host';
import { inferenceV1, modelHostV1, modelV1 } from '@dops/proto';
import { startTestServer, testCredentials, INFERENCE_WORKER_MAIN } from '@dops/testing';
import { WorkerPool, type BackendChoice } from '@dops/worker-pool';
import type { SupervisorLogger } from '@dops/worker-supervisor';

/* eslint-disable no-restricted-syntax -- a benchmark script, not a service: its settings come from bench_gpu.py */
const env = process.env;
const backend = (env['DOPS_BENCH_BACKEND'] ?? 'cuda') as BackendChoice;
const python = env['DOPS_BENCH_PYTHON'] ?? 'python3';
const workRoot = env['DOPS_BENCH_WORKDIR'] ?? '/tmp/dops-gpu-bench';
const modelRoots = (env['DOPS_BENCH_MODEL_ROOT'] ?? workRoot).split(path.delimiter);
const maxBatch = Number(env['DOPS_INFERENCE_MAX_BATCH'] ?? '1');
const batchWaitMs = Number(env['DOPS_INFERENCE_BATCH_WAIT_MS'] ?? '25');
const pythonPath = env['PYTHONPATH'] ?? '';
/* eslint-enable no-restricted-syntax */

const DEADLINE_MS = 900_000;

const stderrLogger: SupervisorLogger = {
  debug: () => undefined,
  info: (fields, msg) => process.stderr.write(`worker info: ${msg ?? ''} ${JSON.stringify(fields)}\n`),
  warn: (fields, msg) => process.stderr.write(`worker warn: ${msg ?? ''} ${JSON.stringify(fields)}\n`),
  error: (fields, msg) => process.stderr.write(`worker error: ${msg ?? ''} ${JSON.stringify(fields)}\n`),
  child: () => stderrLogger,
};

type Command =
  | { cmd: 'load'; modelId: string; path: string; configDir?: string; tier?: 'ram' | 'vram' }
  | { cmd: 'unload'; modelId: string; tier: 'ram' | 'vram' }
  | { cmd: 'gen'; params: Record<string, unknown> }
  | { cmd: 'concurrent'; params: Record<string, unknown>; clients: number; requests: number }
  | { cmd: 'quit' };

const seconds = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9;

async function main(): Promise<void> {
  const pool = new WorkerPool({
    name: 'gpu-bench',
    backend,
    logger: stderrLogger,
    supervisor: {
      command: python,
      args: ['-c', INFERENCE_WORKER_MAIN],
      cwd: workRoot,
      env: {
        ...env,
        PYTHONPATH: pythonPath,
        HF_HUB_OFFLINE: '1',
        DOPS_ARTIFACT_ROOT: path.join(workRoot, 'artifacts'),
        DOPS_INPUT_ROOT: path.join(workRoot, 'inputs'),
        DOPS_MODEL_ROOTS: modelRoots.join(path.delimiter),
      },
      handshakeTimeoutMs: 300_000,
      requestTimeoutMs: DEADLINE_MS,
      cancelGraceMs: 5_000,
      shutdownTimeoutMs: 5_000,
      stdinCloseTimeoutMs: 2_000,
      sigtermTimeoutMs: 2_000,
      drainTimeoutMs: 2_000,
      heartbeatIntervalMs: 10_000,
    },
  });
  await pool.start();
  const deviceId = pool.list()[0]!.device.id;
  const models = new InferenceModels(pool, stderrLogger, {
    lane: { maxBatch, batchWaitMs, maxRequestMs: DEADLINE_MS },
  });
  const generator = new Generator(models, { inputRoot: path.join(workRoot, 'inputs'), modelRoots });
  const server = await startTestServer([
    inferenceService(generator, models),
    modelHostService(models, { modelRoots, configDir: '' }),
  ]);
  const client = createClient(inferenceV1.InferenceServiceClient, server.address, {
    credentials: testCredentials('ops'),
  });
  const hostClient = createClient(modelHostV1.ModelHostServiceClient, server.address, {
    credentials: testCredentials('model', 'mtls'),
  });
  const reply = (value: unknown) => process.stdout.write(JSON.stringify(value) + '\n');

  const generateOnce = async (params: Record<string, unknown>) => {
    const t0 = process.hrtime.bigint();
    const { result } = await call(
      client.generate,
      {
        params: inferenceV1.GenerationParams.fromPartial({ mode: inferenceV1.Mode.TXT2IMG, ...params }),
        deviceId: '',
      },
      { deadlineMs: DEADLINE_MS },
    );
    return {
      wallS: seconds(t0),
      generateS: result!.timings!.generateSeconds,
      writeS: result!.timings!.writeSeconds,
      paths: result!.images.map((i) => i.artifact!.path),
    };
  };

  const handle = async (command: Command): Promise<unknown> => {
    switch (command.cmd) {
      case 'load': {
        const t0 = process.hrtime.bigint();
        const response = await call(
          hostClient.loadModel,
          {
            modelId: command.modelId,
            path: command.path,
            deviceId,
            tier: command.tier === 'ram' ? modelV1.Tier.RAM : modelV1.Tier.VRAM,
            configDir: command.configDir ?? '',
          },
          { deadlineMs: DEADLINE_MS },
        );
        return { loadS: seconds(t0), response };
      }
      case 'unload': {
        const t0 = process.hrtime.bigint();
        await call(
          hostClient.unloadModel,
          {
            modelId: command.modelId,
            deviceId,
            tier: command.tier === 'ram' ? modelV1.Tier.RAM : modelV1.Tier.VRAM,
          },
          { deadlineMs: DEADLINE_MS },
        );
        return { unloadS: seconds(t0) };
      }
      case 'gen':
        return generateOnce(command.params);
      case 'concurrent': {
        // `clients` loops, each sending its next request when its last one answered, until
        // `requests` have been sent; seeds differ per request so no two images are alike.
        let next = 0;
        const perRequestS: number[] = [];
        const t0 = process.hrtime.bigint();
        const loop = async () => {
          while (next < command.requests) {
            const i = next++;
            const seed = Number(command.params['seed'] ?? 0) + i;
            const r = await generateOnce({ ...command.params, seed });
            perRequestS.push(r.wallS);
          }
        };
        await Promise.all(Array.from({ length: command.clients }, loop));
        return { wallS: seconds(t0), perRequestS, images: command.requests };
      }
      case 'quit':
        return { bye: true };
    }
  };

  reply({ ready: true, deviceId, device: pool.list()[0]!.device, maxBatch, batchWaitMs });
  const lines = readline.createInterface({ input: process.stdin });
  try {
    for await (const line of lines) {
      if (!line.trim()) continue;
      const command = JSON.parse(line) as Command;
      try {
        reply({ ok: true, ...((await handle(command)) as object) });
      } catch (err) {
        reply({ ok: false, error: err instanceof Error ? err.message : String(err) });
      }
      if (command.cmd === 'quit') break;
    }
  } finally {
    client.close();
    hostClient.close();
    await server.stop();
    await pool.stop();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(
      `stack bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  },
);
