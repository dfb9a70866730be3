import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Queue, QueueEvents } from 'bullmq';
import { DopsError } from '@dops/errors';
import { defineService } from '@dops/grpc-server';
import { GrpcReservations } from '@dops/model-host';
import { inferenceV1, memoryReservationsV1, modelV1 } from '@dops/proto';
import {
  connectionOptions,
  createRedis,
  listNodes,
  queueConfig,
  stageJobId,
  startTestRedis,
  type Redis,
  type StageJobData,
  type TestRedis,
} from '@dops/queue';
import {
  inferenceWorkerProcess,
  startTestServer,
  testCredentials,
  waitFor,
  type TestServer,
} from '@dops/testing';
import { WorkerPool } from '@dops/worker-pool';
import { silentLogger as silent } from '@dops/worker-supervisor';
import { GenerateStage, Generator, GrpcModelIdentities, InferenceModels, NodeLoader } from '../src/index';

const REPO_ROOT = resolve(__dirname, '../../..');
const FIXTURES = join(REPO_ROOT, 'tools/fixtures/generated');
const CHECKPOINT = join(FIXTURES, 'sd15-tiny.safetensors');
const DEVICE = 'cpu:0';
const NODE = 'loads-node';
// Registry ids (16 hex) of two copies of the tiny checkpoint.
const A = 'aaaaaaaaaaaaaaa1';
const B = 'bbbbbbbbbbbbbbb2';

/**
 * The model service as inference sees it, over real gRPC: GetModel answers at once from what the
 * registry read from the header; a model's sha256 appears only once the test lets its "hashing"
 * finish. Every call is recorded, so a LoadModel (the old round trip) would show.
 */
class Registry {
  readonly calls: string[] = [];
  /** The sha256 each GetModel answer carried ('' = still hashing), in order. */
  readonly answered: { id: string; sha256: string }[] = [];
  private readonly hashed = new Set<string>();
  constructor(private readonly files: Record<string, { path: string; size: number; sha256: string }>) {}

  finishHashing(id: string): void {
    this.hashed.add(id);
  }

  service() {
    const other = (name: string) => () => {
      this.calls.push(name);
      throw new DopsError('UNSUPPORTED', `${name} is not part of a job's cold load`);
    };
    return defineService(
      modelV1.ModelServiceService,
      {
        getModel: (req) => {
          this.calls.push('getModel');
          const file = req.id ? this.files[req.id] : undefined;
          if (!file) throw DopsError.notFound('model', req.id ?? '');
          const sha256 = this.hashed.has(req.id!) ? file.sha256 : '';
          this.answered.push({ id: req.id!, sha256 });
          return {
            model: modelV1.Model.fromPartial({
              id: req.id,
              path: file.path,
              type: modelV1.ModelType.CHECKPOINT,
              base: modelV1.ModelBase.SD1,
              variant: 'normal',
              format: 'safetensors',
              sizeBytes: file.size,
              status: sha256 ? modelV1.ModelStatus.OK : modelV1.ModelStatus.HASHING,
              hashes: sha256 ? { sha256, autoV2: sha256.slice(0, 10), blake3: '', addnet: '' } : undefined,
            }),
          };
        },
        listModels: other('listModels'),
        rescanModels: other('rescanModels'),
        verifyModel: other('verifyModel'),
        loadModel: other('loadModel'),
        unloadModel: other('unloadModel'),
        prefetchModel: other('prefetchModel'),
        listResidency: other('listResidency'),
        watchLoadEvents: other('watchLoadEvents'),
      },
      { default: ['internal'] },
    );
  }
}

/** The memory service's reservation book with room for one model per device: a second gets a plan to evict the first. */
class OneModelLedger {
  readonly log: string[] = [];
  private holder = new Map<string, string>();

  /** Grants, plans and releases (touches left out). */
  get decisions(): string[] {
    return this.log.filter((l) => !l.startsWith('touch '));
  }

  service() {
    const reservation = (deviceId: string, modelId: string) => ({
      id: `${deviceId}/${modelId}`,
      deviceId,
      modelId,
      bytes: 1,
      purpose: 'model-load',
      inUse: false,
    });
    return defineService(
      memoryReservationsV1.MemoryReservationServiceService,
      {
        reserve: (req) => {
          const holder = this.holder.get(req.deviceId);
          if (holder && holder !== req.modelId) {
            this.log.push(`plan ${req.modelId}: evict ${holder}`);
            return { evictionPlan: { modelIds: [holder], freedBytes: 1, neededBytes: 1 } };
          }
          this.holder.set(req.deviceId, req.modelId);
          this.log.push(`grant ${req.modelId}`);
          return { granted: reservation(req.deviceId, req.modelId) };
        },
        release: (req) => {
          if (this.holder.get(req.deviceId) !== req.modelId)
            throw DopsError.notFound('reservation', `${req.deviceId}/${req.modelId}`);
          this.holder.delete(req.deviceId);
          this.log.push(`release ${req.modelId}`);
          return { released: reservation(req.deviceId, req.modelId) };
        },
        listReservations: () => ({ devices: [] }),
        touch: (req) => {
          this.log.push(`touch ${req.modelId}`);
          return { reservation: reservation(req.deviceId, req.modelId) };
        },
        markInUse: (req) => ({ reservation: reservation(req.deviceId, req.modelId) }),
      },
      { default: ['internal'] },
    );
  }
}

(existsSync(CHECKPOINT) ? describe : describe.skip)(
  'cold loads decided on the node (real worker, Redis and gRPC)',
  () => {
    let root: string;
    let artifactRoot: string;
    let redis: TestRedis;
    let reader: Redis;
    let pool: WorkerPool;
    let models: InferenceModels;
    let loader: NodeLoader;
    let stage: GenerateStage;
    let server: TestServer;
    let queue: Queue;
    let events: QueueEvents;
    let registry: Registry;
    let ledger: OneModelLedger;
    let shaA: string;
    const prefix = `loads${process.pid}`;

    beforeAll(async () => {
      root = await mkdtemp(join(tmpdir(), 'dops-node-loads-'));
      artifactRoot = join(root, 'artifacts');
      const modelRoot = join(root, 'models');
      await cp(CHECKPOINT, join(modelRoot, 'a.safetensors'));
      await cp(CHECKPOINT, join(modelRoot, 'b.safetensors'));
      await cp(join(FIXTURES, 'configs'), join(modelRoot, 'configs'), { recursive: true });
      const bytes = await readFile(join(modelRoot, 'a.safetensors'));
      shaA = createHash('sha256').update(bytes).digest('hex');
      registry = new Registry({
        [A]: { path: join(modelRoot, 'a.safetensors'), size: bytes.length, sha256: shaA },
        [B]: { path: join(modelRoot, 'b.safetensors'), size: bytes.length, sha256: shaA },
      });
      ledger = new OneModelLedger();
      server = await startTestServer([registry.service(), ledger.service()]);
      redis = await startTestRedis();
      reader = createRedis(redis.url);
      pool = new WorkerPool({
        name: 'node-loads-test',
        backend: 'cpu',
        logger: silent,
        supervisor: {
          ...inferenceWorkerProcess({
            artifactRoot: artifactRoot,
            inputRoot: join(root, 'inputs'),
            modelRoots: modelRoot,
          }),
          handshakeTimeoutMs: 60_000,
          requestTimeoutMs: 120_000,
          heartbeatIntervalMs: 60_000,
        },
      });
      await pool.start();
      // A shared 2-core box can be slow: an unload waits as long as the long generation below takes.
      models = new InferenceModels(pool, silent, { unloadWaitMs: 300_000 });
      const credentials = testCredentials('inference', 'mtls');
      loader = new NodeLoader(models, pool, {
        identities: new GrpcModelIdentities(server.address, credentials),
        reservations: new GrpcReservations(server.address, credentials),
        modelRoots: [modelRoot],
        configDir: join(modelRoot, 'configs'),
        hashPollMs: 100,
      });
      const generator = new Generator(models, { inputRoot: join(root, 'inputs'), modelRoots: [modelRoot] });
      stage = new GenerateStage(generator, models, pool, {
        redisUrl: redis.url,
        queue: queueConfig.parse({ redisUrl: redis.url, prefix, nodeId: NODE }),
        ensureLoaded: (modelId, signal) => loader.ensureOnVram(modelId, signal),
        onUse: (modelId, deviceId) => loader.used(modelId, deviceId),
        // Two jobs at once on the one device: one can wait in the lane while the other runs.
        jobsPerDevice: 2,
      });
      await stage.start();
      queue = new Queue('inference', { connection: connectionOptions(redis.url), prefix });
      events = new QueueEvents('inference', { connection: connectionOptions(redis.url), prefix });
      await events.waitUntilReady();
    }, 120_000);

    afterAll(async () => {
      await stage?.stop();
      loader?.close();
      await events?.close();
      await queue?.close();
      reader?.disconnect();
      await pool?.stop();
      await server?.stop();
      await redis?.stop();
      if (root) await rm(root, { recursive: true, force: true });
    }, 120_000);

    let jobs = 0;
    /** Queues one generate stage job for `modelId` and resolves to its PNG's bytes once it succeeded. */
    async function generate(modelId: string, steps = 2): Promise<Buffer> {
      const jobId = `job${++jobs}`;
      const data: StageJobData = {
        jobId,
        stage: 'generate',
        params: inferenceV1.GenerationParams.toJSON(
          inferenceV1.GenerationParams.fromPartial({
            modelId,
            mode: inferenceV1.Mode.TXT2IMG,
            prompt: 'a tiny red cube',
            width: 64,
            height: 64,
            steps,
            seed: 7,
            scheduler: 'Euler',
          }),
        ) as Record<string, unknown>,
        deadlineAt: Date.now() + 120_000,
        clientId: 'test',
      };
      const job = await queue.add('generate', data, { jobId: stageJobId(jobId, 'generate') });
      const result = (await job.waitUntilFinished(events, 120_000)) as { images: { path: string }[] };
      return readFile(result.images[0]!.path);
    }

    /** What the worker process itself holds on VRAM (model.resident), and what the node announces. */
    async function heldAndAnnounced(): Promise<{ held: string[]; announced: string[] }> {
      const resident = await models.resident(DEVICE);
      const nodes = await listNodes(reader, prefix);
      const device = nodes.find((n) => n.nodeId === NODE)?.devices.find((d) => d.id === DEVICE);
      return {
        held: resident
          .filter((m) => m.tier === 'vram')
          .map((m) => m.modelId)
          .sort(),
        announced: [...(device?.residentModels ?? [])].sort(),
      };
    }

    const announcedEquals = (expected: string[]) =>
      waitFor(
        async () => {
          const now = await heldAndAnnounced();
          return JSON.stringify(now.announced) === JSON.stringify(expected) &&
            JSON.stringify(now.held) === JSON.stringify(expected)
            ? now
            : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 100, description: `announced and held = [${expected.join(', ')}]` },
      );

    it('runs the first job for a model the registry has not hashed yet, without waiting for the hash', async () => {
      const png = await generate(A);
      // The job succeeded while every identity answer still said "hashing": it never waited for a hash.
      const answers = registry.answered.filter((a) => a.id === A);
      expect(answers.length).toBeGreaterThan(0);
      expect(answers.every((a) => a.sha256 === '')).toBe(true);
      // Inference asked the registry for identities only; nothing went back into it (no LoadModel).
      expect(new Set(registry.calls)).toEqual(new Set(['getModel']));
      expect(ledger.decisions).toEqual([`grant ${A}`]);
      // The job's generation counted as a use of the reservation (eviction plans are least recently used first).
      expect(ledger.log).toContain(`touch ${A}`);
      // An image made before the hash is known does not name the model by hash.
      expect(png.toString('latin1')).not.toContain('Model hash:');
      await announcedEquals([A]);
    }, 180_000);

    it('passes the hash to the worker once the registry has it: later images name the model by it', async () => {
      registry.finishHashing(A);
      await waitFor(() => models.heldOn(A, DEVICE)?.sha256, {
        timeoutMs: 30_000,
        intervalMs: 50,
        description: 'the hash reached the worker',
      });
      const png = await generate(A);
      expect(png.toString('latin1')).toContain(`Model hash: ${shaA.slice(0, 10)}`);
      expect(registry.calls.every((c) => c === 'getModel')).toBe(true);
    }, 180_000);

    it('carries out an eviction plan through its own lane, and announces exactly what the worker holds', async () => {
      await generate(B);
      // The ledger had room for one: A was evicted (to RAM) between generations, its reservation released.
      expect(ledger.decisions.slice(1)).toEqual([`plan ${B}: evict ${A}`, `release ${A}`, `grant ${B}`]);
      expect(models.heldOn(A, DEVICE)?.tier).toBe('ram');
      await announcedEquals([B]);

      await models.unload(B, DEVICE, 'vram');
      await announcedEquals([]);
      await models.load(B, join(root, 'models', 'b.safetensors'), DEVICE, 'vram', {
        configDir: join(root, 'models', 'configs'),
      });
      await announcedEquals([B]);
    }, 180_000);

    it('announces after a worker restart only what the new worker holds; the model comes back with its hash', async () => {
      registry.finishHashing(B);
      await waitFor(() => models.heldOn(B, DEVICE)?.sha256, {
        timeoutMs: 30_000,
        intervalMs: 50,
        description: 'the hash of B reached the worker',
      });
      const before = pool.get(DEVICE).supervisor.health();
      process.kill(before.pid!, 'SIGKILL');
      // The lost worker holds nothing: the node stops announcing B at once, before the new worker is up.
      await waitFor(
        async () => {
          const device = (await listNodes(reader, prefix))
            .find((n) => n.nodeId === NODE)
            ?.devices.find((d) => d.id === DEVICE);
          return device && device.residentModels.length === 0 ? device : undefined;
        },
        { timeoutMs: 30_000, intervalMs: 20, description: 'B no longer announced' },
      );
      await waitFor(
        () => {
          const now = pool.get(DEVICE).supervisor.health();
          return now.restarts > before.restarts && now.state === 'ready' ? now : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 100, description: 'the worker restarted' },
      );
      const { held, announced } = await announcedEquals([B]);
      expect(announced).toEqual(held);
      // The restarted worker took back only the VRAM model and A's RAM copy, as the lost one held them.
      const resident = await models.resident(DEVICE);
      expect(resident.map((m) => [m.modelId, m.tier]).sort()).toEqual([
        [A, 'ram'],
        [B, 'vram'],
      ]);
      // Loaded back with the hash the lost worker had: no new cold load, still named by hash.
      const png = await generate(B);
      expect(png.toString('latin1')).toContain(`Model hash: ${shaA.slice(0, 10)}`);
    }, 180_000);

    it('loads a model back when it left the device while a job for it waited in the lane, and runs the job', async () => {
      const asked = () => registry.answered.filter((a) => a.id === B).length;
      const before = asked();
      const long = generate(B, 16);
      await waitFor(() => pool.get(DEVICE).supervisor.health().activeRequests > 0 || undefined, {
        timeoutMs: 60_000,
        intervalMs: 20,
        description: 'the long generation runs',
      });
      // Queued behind the running generation, as an eviction for another job's model would be.
      const unloading = models.unload(B, DEVICE, 'vram');
      const short = generate(B);
      expect(await unloading).toBe(true);
      await long;
      // The short job reached the worker after the unload, found its model gone, had it loaded back and ran.
      const png = await short;
      expect(png.subarray(1, 4).toString('latin1')).toBe('PNG');
      expect(asked()).toBeGreaterThan(before);
      expect(models.residentOnVram(DEVICE)).toEqual([B]);
    }, 240_000);
  },
);
