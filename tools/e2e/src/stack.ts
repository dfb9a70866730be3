import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { call, createClient } from '@dops/grpc-client';
import { modelV1, processingV1 } from '@dops/proto';
import { startTestRedis, type TestRedis } from '@dops/queue';
import {
  descendants,
  listProcesses,
  type ServiceProcess,
  startServiceProcess,
  testCredentials,
  waitFor,
} from '@dops/testing';

export { descendants, listProcesses };

const ROOT = path.resolve(__dirname, '../../..');
/** The bundled tiny models (tools/fixtures/generated). */
export const FIXTURES = path.join(ROOT, 'tools/fixtures/generated');
/** Environment variable that marks every process of one stack (inherited by the Python workers). */
const TAG_VAR = 'DOPS_E2E_STACK';

/** One inference node: its model service (the registry it asks about a model's file) and its inference process. */
export interface InferenceNode {
  nodeId: string;
  model: ServiceProcess;
  inference: ServiceProcess;
}

export interface StackOptions {
  /** Inference processes (nodes), 1 or 2. Default 1. */
  inferenceNodes?: number;
  /** Start postprocessing. Default true. */
  postprocessing?: boolean;
  /** BullMQ lock of an active stage job, ms. Default 4 000. */
  lockDurationMs?: number;
  /** Stalled-job check interval, ms. Default 2 000. */
  stalledIntervalMs?: number;
  /** Extra environment for every service. */
  env?: Record<string, string>;
  /** The postprocessing service's safety checker, relative to the fixtures. Default the one that passes every image. */
  safetyChecker?: string;
  /** Start the device and memory services too, over the first inference node and postprocessing. Default false. */
  deviceAndMemory?: boolean;
}

export interface Stack {
  redis: TestRedis;
  prefix: string;
  /** Temp dir holding artifacts, inputs, model state and configs (removed by stop()). */
  dir: string;
  artifactRoot: string;
  processing: ServiceProcess;
  postprocessing?: ServiceProcess;
  /** With `deviceAndMemory`. */
  device?: ServiceProcess;
  memory?: ServiceProcess;
  nodes: InferenceNode[];
  client: processingV1.ProcessingServiceClient;
  /** The registry id of a model file (path relative to the fixtures), from the model service. */
  modelId(relPath: string): Promise<string>;
  /** Starts one more inference node (own model service, own node id). */
  addInferenceNode(): Promise<InferenceNode>;
  /** Stops the queue consumers (inference nodes and postprocessing) gracefully. */
  stopConsumers(): Promise<void>;
  /** Restarts the stopped postprocessing process (new process, same settings). */
  startPostprocessing(): Promise<ServiceProcess>;
  /** Every process of this stack that is alive now (pid → command line), Redis included. */
  liveProcesses(): Map<number, string>;
  /** The real Node.js process of a service (tsx runs main.ts in a child node process). */
  servicePid(service: ServiceProcess): number;
  /** The Python worker pid(s) under a service process. */
  workerPids(service: ServiceProcess): number[];
  /** Output of every process, for failure messages. */
  logs(): string;
  /** Stops everything; throws when any process of the stack is still alive afterwards. */
  stop(): Promise<void>;
}

/** A free TCP port on 127.0.0.1 (for the model ⇄ inference pair, which name each other). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function hasTag(pid: number, tag: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(`${TAG_VAR}=${tag}`);
  } catch {
    return false;
  }
}

export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/**
 * Starts a real stack as processes on free ports: a fresh redis-server (AOF) and a unique queue
 * prefix; per inference node a model service (roots = the tiny fixtures, state in the temp dir)
 * paired with an inference process (own node id, short lock/stalled intervals); postprocessing
 * (upscaler + safety checker fixtures); processing. All on DOPS_BACKEND=cpu, artifacts and
 * inputs in a temp dir. `stop()` stops everything and asserts nothing is left running.
 */
export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const tag = randomBytes(6).toString('hex');
  const prefix = `e2e${tag}`;
  const dir = mkdtempSync(path.join(tmpdir(), 'dops-e2e-'));
  const artifactRoot = path.join(dir, 'artifacts');
  const inputRoot = path.join(dir, 'inputs');
  mkdirSync(artifactRoot, { recursive: true });
  mkdirSync(inputRoot, { recursive: true });
  const all: ServiceProcess[] = [];
  const seen = new Map<number, string>();
  const redis = await startTestRedis({ aof: true });

  const common: Record<string, string> = {
    [TAG_VAR]: tag,
    DOPS_BACKEND: 'cpu',
    HF_HUB_OFFLINE: '1',
    DOPS_LOG_LEVEL: 'info',
    DOPS_SHUTDOWN_GRACE_MS: '3000',
    DOPS_WORKER_STOP_TIMEOUT_MS: '3000',
    DOPS_ARTIFACT_ROOT: artifactRoot,
    DOPS_INPUT_ROOT: inputRoot,
    ...options.env,
  };
  const queueEnv: Record<string, string> = {
    DOPS_REDIS_URL: redis.url,
    DOPS_QUEUE_PREFIX: prefix,
    DOPS_QUEUE_LOCK_DURATION_MS: String(options.lockDurationMs ?? 4_000),
    DOPS_QUEUE_STALLED_INTERVAL_MS: String(options.stalledIntervalMs ?? 2_000),
  };
  const start = async (app: string, env: Record<string, string>): Promise<ServiceProcess> => {
    const proc = startServiceProcess(app, { ...common, ...env });
    all.push(proc);
    await proc.listening(120_000);
    return proc;
  };

  let nodeCount = 0;
  const nodes: InferenceNode[] = [];
  const addInferenceNode = async (): Promise<InferenceNode> => {
    const n = ++nodeCount;
    const nodeId = `node${n}`;
    // The model service loads an operator's LoadModel through its node's inference process, which
    // asks it about model files: the two name each other, so the inference port is chosen first.
    const inferencePort = await freePort();
    // An empty memory address (no reservations) can be given only by file: an empty variable means unset.
    const modelConfig = path.join(dir, `model-${nodeId}.yaml`);
    writeFileSync(modelConfig, 'model:\n  memoryAddress: ""\n');
    const model = await start('model', {
      DOPS_CONFIG_FILE: modelConfig,
      DOPS_MODEL_ROOTS: FIXTURES,
      DOPS_MODEL_CONFIG_DIR: path.join(FIXTURES, 'configs'),
      DOPS_MODEL_STATE_PATH: path.join(dir, `model-state-${nodeId}.json`),
      DOPS_MODEL_HOST_ADDRESS: `127.0.0.1:${inferencePort}`,
    });
    // Nor does inference reserve the cold loads it decides (the stack's memory service, when
    // started, comes later and knows no device until its hosts answer).
    const inferenceConfig = path.join(dir, `inference-${nodeId}.yaml`);
    writeFileSync(inferenceConfig, 'inference:\n  memoryAddress: ""\n');
    const inference = await start('inference', {
      ...queueEnv,
      DOPS_CONFIG_FILE: inferenceConfig,
      DOPS_GRPC_PORT: String(inferencePort),
      DOPS_QUEUE_NODE_ID: nodeId,
      DOPS_INFERENCE_MODEL_ROOTS: FIXTURES,
      DOPS_INFERENCE_CONFIG_DIR: path.join(FIXTURES, 'configs'),
      DOPS_INFERENCE_MODEL_SERVICE_ADDRESS: model.address,
    });
    const node = { nodeId, model, inference };
    nodes.push(node);
    return node;
  };

  const firstModel = () => {
    const node = nodes[0];
    if (!node) throw new Error('no inference node started');
    return node.model.address;
  };
  const postprocessingEnv = {
    ...queueEnv,
    DOPS_QUEUE_NODE_ID: 'post1',
    DOPS_POSTPROCESSING_MODEL_ROOTS: FIXTURES,
    DOPS_POSTPROCESSING_SAFETY_CHECKER_PATH: path.join(
      FIXTURES,
      options.safetyChecker ?? 'safety-checker-tiny-passes-all',
    ),
  };

  const stack: Stack = {
    redis,
    prefix,
    dir,
    artifactRoot,
    nodes,
    processing: undefined as unknown as ServiceProcess,
    client: undefined as unknown as processingV1.ProcessingServiceClient,
    addInferenceNode,
    async modelId(relPath) {
      const models = createClient(modelV1.ModelServiceClient, firstModel(), {
        credentials: testCredentials('ops'),
      });
      try {
        const found = await waitFor(
          () => call(models.getModel, { path: relPath }, { deadlineMs: 5_000 }).then((r) => r.model),
          { timeoutMs: 30_000, intervalMs: 250, description: `model ${relPath} registered` },
        );
        return found.id;
      } finally {
        models.close();
      }
    },
    async startPostprocessing() {
      stack.postprocessing = await start('postprocessing', postprocessingEnv);
      return stack.postprocessing;
    },
    async stopConsumers() {
      const consumers = [
        ...nodes.map((n) => n.inference),
        ...(stack.postprocessing ? [stack.postprocessing] : []),
      ];
      await Promise.all(consumers.map((p) => p.stop(20_000)));
    },
    liveProcesses() {
      const live = new Map<number, string>();
      for (const p of listProcesses()) {
        const redisOurs = p.cmdline.startsWith('redis-server') && p.cmdline.includes(`:${redis.port}`);
        if (redisOurs || hasTag(p.pid, tag)) live.set(p.pid, p.cmdline);
      }
      for (const [pid, cmd] of live) seen.set(pid, cmd);
      return live;
    },
    servicePid(service) {
      const pid = service.child.pid ?? -1;
      const node = descendants(pid).find(
        (p) => /\bnode\b/.test(p.cmdline.split(' ')[0] ?? '') || p.cmdline.includes('main.ts'),
      );
      return node?.pid ?? pid;
    },
    workerPids(service) {
      return descendants(service.child.pid ?? -1)
        .filter((p) => p.cmdline.includes('dops_worker'))
        .map((p) => p.pid);
    },
    logs() {
      const names = [
        'processing',
        'postprocessing',
        'device',
        'memory',
        ...nodes.flatMap((n) => [`model ${n.nodeId}`, `inference ${n.nodeId}`]),
      ];
      const procs = [
        stack.processing,
        stack.postprocessing,
        stack.device,
        stack.memory,
        ...nodes.flatMap((n) => [n.model, n.inference]),
      ];
      return procs
        .map((p, i) => (p ? `===== ${names[i]}\n${p.output().split('\n').slice(-60).join('\n')}` : ''))
        .join('\n');
    },
    async stop() {
      stack.client?.close();
      // DOPS_E2E_LOG_DIR: keep every process' output there (debugging, CI artifacts).
      const logDir = process.env['DOPS_E2E_LOG_DIR'];
      if (logDir) {
        mkdirSync(logDir, { recursive: true });
        all.forEach((p, i) =>
          writeFileSync(
            path.join(
              logDir,
              `${prefix}-${i}-${p.child.spawnargs.join(' ').match(/apps\/(\w+)/)?.[1] ?? 'proc'}.log`,
            ),
            p.output(),
          ),
        );
      }
      // Record what runs now, so that the check below also covers processes whose parent is gone.
      stack.liveProcesses();
      const consumers = all.filter((p) => p !== stack.processing);
      await Promise.all([...consumers, stack.processing].filter(Boolean).map((p) => p.stop(20_000)));
      await redis.stop();
      // Workers exit on stdin EOF / parent death; give them a bounded moment.
      const left = await waitFor(
        () => {
          const live = [...seen.keys()].filter(isAlive);
          for (const [pid] of stack.liveProcesses()) if (!live.includes(pid)) live.push(pid);
          return live.length === 0 ? 'none' : undefined;
        },
        { timeoutMs: 20_000, intervalMs: 200, description: 'every stack process exited' },
      ).catch(() => undefined);
      const still = [...seen.entries()].filter(([pid]) => isAlive(pid));
      if (!left || still.length > 0) {
        for (const [pid] of still) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // already gone
          }
        }
        rmSync(dir, { recursive: true, force: true });
        throw new Error(
          `orphan processes left by the stack:\n${still.map(([p, c]) => `${p} ${c}`).join('\n')}`,
        );
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };

  try {
    const inferenceCount = options.inferenceNodes ?? 1;
    for (let i = 0; i < inferenceCount; i++) await addInferenceNode();
    if (options.postprocessing ?? true) await stack.startPostprocessing();
    stack.processing = await start('processing', {
      ...queueEnv,
      DOPS_PROCESSING_MODEL_SERVICE_ADDRESS: firstModel(),
      DOPS_PROCESSING_BACKOFF_MS: '200',
      DOPS_PROCESSING_ATTEMPTS: '3',
      // The chaos runs submit hundreds of jobs as one client, faster than a client may by default.
      DOPS_PROCESSING_MAX_QUEUED_PER_CLIENT: '10000',
      DOPS_PROCESSING_SUBMITS_PER_SECOND: '1000',
    });
    if (options.deviceAndMemory) {
      const hosts = [
        nodes[0]!.inference.address,
        ...(stack.postprocessing ? [stack.postprocessing.address] : []),
      ].join(',');
      stack.device = await start('device', { DOPS_DEVICE_HOSTS: hosts });
      stack.memory = await start('memory', { DOPS_MEMORY_HOSTS: hosts });
    }
    stack.client = createClient(processingV1.ProcessingServiceClient, stack.processing.address, {
      credentials: testCredentials('alice'),
    });
    stack.liveProcesses();
  } catch (err) {
    const logs = stack.logs.call({ ...stack, processing: stack.processing });
    await stack.stop().catch(() => undefined);
    throw new Error(`stack did not start: ${(err as Error).message}\n${logs}`, { cause: err });
  }
  return stack;
}
