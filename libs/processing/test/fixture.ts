// Shared by the processing tests: options, a fake inference node, requests.
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DirectoryArtifactStore } from '@dops/artifact-store';
import type { DopsError } from '@dops/errors';
import { commonV1, inferenceV1, processingV1 } from '@dops/proto';
import {
  NodeAnnouncer,
  createRedis,
  startTestRedis,
  type Artifact,
  type Redis,
  type TestRedis,
} from '@dops/queue';
import { Processing, type ProcessingArtifactOptions, type ProcessingOptions } from '../src/index';

/** The artifact root of this test file's Processing instances (the directory store's root). */
export const ARTIFACT_ROOT = mkdtempSync(join(tmpdir(), 'dops-proc-artifacts-'));

/** Artifact options over ARTIFACT_ROOT (a directory store; no periodic sweep). */
export function testArtifacts(over: Partial<ProcessingArtifactOptions> = {}): ProcessingArtifactOptions {
  return { store: new DirectoryArtifactStore(ARTIFACT_ROOT), root: ARTIFACT_ROOT, ttlMs: 60_000, ...over };
}

/** An image as a stage returns it, written for real under ARTIFACT_ROOT as `name`. */
export function writeStageImage(name: string): Artifact {
  const data = Buffer.from(`image ${name} ${Math.random()}`);
  const path = join(ARTIFACT_ROOT, name);
  writeFileSync(path, data, { mode: 0o600 });
  return {
    path,
    sha256: createHash('sha256').update(data).digest('hex'),
    width: 64,
    height: 64,
    format: 'png',
  };
}

/** Quotas and TTLs well above what a test uses (the quota and TTL tests set their own). */
export const GENEROUS_QUOTAS = {
  maxQueuedPerClient: 1_000,
  submitsPerSecond: 1_000,
  submitBurst: 0,
  maxOpenSessions: 100,
  sessionTtlMs: 60_000,
  idempotencyTtlMs: 60_000,
} satisfies Partial<ProcessingOptions>;

let n = 0;

/**
 * A started Processing on a fresh prefix of `redisUrl`, with a busy fake inference node
 * holding model 'm' (so its jobs stay queued: nothing consumes them).
 */
export async function startProcessing(redis: Redis, redisUrl: string, over: Partial<ProcessingOptions> = {}) {
  const prefix = `f${process.pid}x${++n}`;
  const announcer = new NodeAnnouncer(redis, {
    prefix,
    nodeId: 'fake',
    service: 'inference',
    devices: () => [{ id: 'cpu:0', backend: 'cpu', state: 'busy', residentModels: ['m'], activeJobs: 1 }],
  });
  await announcer.start();
  const processing = new Processing({
    redisUrl,
    prefix,
    retentionMs: 60_000,
    maxQueued: 1_000,
    retryAfterMs: 2_000,
    maxBatchItems: 20,
    defaultDeadlineMs: 60_000,
    attempts: 1,
    backoffMs: 10,
    maxImageBytes: 1_000_000,
    inputRoot: join(tmpdir(), 'dops-in'),
    defaultSafety: 'off',
    artifacts: testArtifacts(),
    ...GENEROUS_QUOTAS,
    ...over,
  });
  await processing.start();
  return {
    prefix,
    processing,
    close: async () => {
      await processing.close();
      await announcer.stop();
    },
  };
}

/** A valid txt2img SubmitJobRequest for model 'm'. */
export function jobRequest(over: Partial<processingV1.SubmitJobRequest> = {}): processingV1.SubmitJobRequest {
  return {
    idempotencyKey: '',
    sessionId: '',
    priority: processingV1.Priority.NORMAL,
    deadlineSeconds: 0,
    spec: {
      template: 'txt2img',
      safety: commonV1.SafetyPolicy.UNSPECIFIED,
      controlnetImages: [],
      params: inferenceV1.GenerationParams.fromPartial({ modelId: 'm', steps: 1, width: 64, height: 64 }),
    },
    ...over,
  };
}

/** A SubmitBatchRequest of `count` jobs (a seed sweep). */
export function batchRequest(
  count: number,
  over: Partial<processingV1.SubmitBatchRequest> = {},
): processingV1.SubmitBatchRequest {
  const values = Array.from({ length: count }, (_, i) => String(i + 1));
  return {
    ...jobRequest(),
    expansion: { cartesian: [{ field: 'seed', values }], zip: [], repeat: 0 },
    ...over,
  };
}

/** The error a promise rejects with; throws when it resolves. */
export async function failure(p: Promise<unknown>): Promise<DopsError> {
  try {
    await p;
  } catch (err) {
    return err as DopsError;
  }
  throw new Error('expected the call to fail');
}

/**
 * Jest hooks for a suite of Processing tests on one real Redis: starts it before the suite, closes
 * each test's Processing after the test, stops Redis after the suite. `setup(over)` starts one.
 */
export function useProcessingSuite() {
  let redis: TestRedis;
  let client: Redis;
  const cleanup: (() => Promise<unknown>)[] = [];
  beforeAll(async () => {
    redis = await startTestRedis();
    client = createRedis(redis.url);
  });
  afterEach(async () => {
    while (cleanup.length) await cleanup.pop()!().catch(() => undefined);
  });
  afterAll(async () => {
    client.disconnect();
    await redis.stop();
  });
  return {
    /** A Redis connection for assertions on keys. */
    client: () => client,
    redisUrl: () => redis.url,
    async setup(over: Partial<ProcessingOptions> = {}) {
      const started = await startProcessing(client, redis.url, over);
      cleanup.push(started.close);
      return started;
    },
  };
}
