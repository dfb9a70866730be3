// Job artifacts over real gRPC, real Redis and real BullMQ: publish on success, download by bytes
// and sha256 (chunked and inline), only by the owner, retention, removal of failed and cancelled
// jobs' files; and the same with the S3 store on a real S3-compatible server (moto).
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { S3ArtifactStore } from '@dops/artifact-store';
import { DopsError } from '@dops/errors';
import { call, createClient, stream } from '@dops/grpc-client';
import { commonV1, processingV1 } from '@dops/proto';
import { StageWorker, type StageContext, type StageResult } from '@dops/queue';
import { collect, startTestServer, testCredentials, waitFor } from '@dops/testing';
import { resolvePythonExecutable } from '@dops/worker-supervisor';
import { processingService, type ProcessingArtifactOptions } from '../src/index';
import { ARTIFACT_ROOT, jobRequest, testArtifacts, useProcessingSuite, writeStageImage } from './fixture';

const S = processingV1.JobState;
const suite = useProcessingSuite();
const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!().catch(() => undefined);
});

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Processing behind a real gRPC server, with clients for alice and bob. */
async function setup(artifacts: ProcessingArtifactOptions = testArtifacts()) {
  const { prefix, processing } = await suite.setup({ artifacts });
  const server = await startTestServer([processingService(processing)]);
  cleanup.push(() => server.stop());
  const as = (name: string) => {
    const c = createClient(processingV1.ProcessingServiceClient, server.address, {
      deadlineMs: 20_000,
      credentials: testCredentials(name),
    });
    cleanup.push(async () => c.close());
    return c;
  };
  return { prefix, processing, alice: as('alice'), bob: as('bob') };
}

type Api = processingV1.ProcessingServiceClient;

/** A real BullMQ consumer of `queue` running `body` for each stage job. */
async function consumer(
  prefix: string,
  queue: string,
  body: (ctx: StageContext<Record<string, unknown>>) => Promise<StageResult>,
) {
  const w = new StageWorker({
    queues: [queue],
    redisUrl: suite.redisUrl(),
    prefix,
    concurrency: 1,
    process: body,
  });
  await w.start();
  cleanup.push(() => w.close(true));
  return w;
}

async function until(api: Api, jobId: string, state: processingV1.JobState, timeoutMs = 20_000) {
  return waitFor(
    async () => {
      const { job } = await call(api.getJob, { jobId });
      return job!.state === state ? job! : undefined;
    },
    { timeoutMs, description: `job ${jobId} ${state}` },
  );
}

/** Every message of a download, and the bytes they carry. */
async function download(api: Api, artifactId: string, inlineMaxBytes = 0) {
  const messages = await collect(stream(api.downloadArtifact, { artifactId, inlineMaxBytes }));
  return { messages, bytes: Buffer.concat(messages.map((m) => Buffer.from(m.data))) };
}

async function codeOf(p: Promise<unknown>): Promise<{ code: string; fields: string[] }> {
  try {
    await p;
    return { code: 'ok', fields: [] };
  } catch (e) {
    const err = e as DopsError;
    return { code: err.code, fields: err.violations.map((v) => v.field) };
  }
}

/** A file of `size` pseudo-random bytes under ARTIFACT_ROOT, as a stage returns it. */
function bigImage(name: string, size: number) {
  const data = Buffer.alloc(size);
  for (let i = 0; i < size; i++) data[i] = (i * 2654435761) >>> 24;
  writeFileSync(join(ARTIFACT_ROOT, name), data, { mode: 0o600 });
  return {
    path: join(ARTIFACT_ROOT, name),
    sha256: sha256(data),
    width: 64,
    height: 64,
    format: 'png',
    data,
  };
}

describe('DownloadArtifact', () => {
  it('streams a succeeded job’s image in chunks with its size and sha256, or inline on request', async () => {
    const { prefix, alice } = await setup();
    let written: ReturnType<typeof bigImage> | undefined;
    await consumer(prefix, 'inference', async (ctx) => {
      written = bigImage(`${ctx.data.jobId}.png`, 700_000);
      const { data: _data, ...image } = written;
      return { images: [image] };
    });
    const { job } = await call(alice.submitJob, jobRequest());
    const done = await until(alice, job!.id, S.SUCCEEDED);
    const image = done.images[0]!;
    expect(image.id).toBe(written!.sha256);
    expect(image.path).toBe(written!.path);

    const chunked = await download(alice, image.id!);
    expect(chunked.messages[0]!.header).toMatchObject({
      artifactId: image.id,
      sizeBytes: 700_000,
      sha256: written!.sha256,
      format: 'png',
      jobId: job!.id,
    });
    expect(chunked.messages.length).toBeGreaterThanOrEqual(4);
    expect(chunked.messages.slice(1).every((m) => m.header === undefined)).toBe(true);
    expect(chunked.bytes.equals(written!.data)).toBe(true);
    expect(sha256(chunked.bytes)).toBe(chunked.messages[0]!.header!.sha256);

    const inline = await download(alice, image.id!, 1_000_000);
    expect(inline.messages).toHaveLength(1);
    expect(inline.bytes.equals(written!.data)).toBe(true);
  });

  it('answers NOT_FOUND for another client’s artifact exactly as for a missing one, and checks its fields', async () => {
    const { prefix, alice, bob } = await setup();
    await consumer(prefix, 'inference', async (ctx) => ({
      images: [writeStageImage(`${ctx.data.jobId}.png`)],
    }));
    const { job } = await call(alice.submitJob, jobRequest());
    const id = (await until(alice, job!.id, S.SUCCEEDED)).images[0]!.id!;
    const other = await codeOf(download(bob, id));
    const missing = await codeOf(download(bob, 'f'.repeat(64)));
    expect(other).toEqual({ code: 'NOT_FOUND', fields: ['artifact_id'] });
    expect(missing).toEqual(other);
    expect(await codeOf(download(alice, '../etc/passwd'))).toEqual({
      code: 'INVALID_ARGUMENT',
      fields: ['artifact_id'],
    });
    expect(await codeOf(download(alice, id, 4 * 1024 * 1024))).toEqual({
      code: 'INVALID_ARGUMENT',
      fields: ['inline_max_bytes'],
    });
    expect((await download(alice, id)).bytes.length).toBeGreaterThan(0);
  });
});

describe('retention', () => {
  it('sweeps artifacts past the TTL: their files go and downloads answer NOT_FOUND', async () => {
    const { prefix, processing, alice } = await setup(testArtifacts({ ttlMs: 60 * 60_000 }));
    await consumer(prefix, 'inference', async (ctx) => ({
      images: [writeStageImage(`${ctx.data.jobId}.png`)],
    }));
    const { job: oldJob } = await call(alice.submitJob, jobRequest());
    const { job: newJob } = await call(alice.submitJob, jobRequest());
    const old = (await until(alice, oldJob!.id, S.SUCCEEDED)).images[0]!;
    const fresh = (await until(alice, newJob!.id, S.SUCCEEDED)).images[0]!;
    const twoHoursAgo = new Date(Date.now() - 2 * 3_600_000);
    utimesSync(old.path, twoHoursAgo, twoHoursAgo);

    expect(await processing.sweepArtifacts()).toBe(1);
    expect(existsSync(old.path)).toBe(false);
    expect(existsSync(fresh.path)).toBe(true);
    expect((await codeOf(download(alice, old.id!))).code).toBe('NOT_FOUND');
    expect((await download(alice, fresh.id!)).bytes.equals(readFileSync(fresh.path))).toBe(true);
  });
});

describe('outputs of failed and cancelled jobs', () => {
  const upscaled = () =>
    jobRequest({
      spec: {
        ...jobRequest().spec!,
        upscale: { modelPath: '/models/x.safetensors', scale: 2 },
        safety: commonV1.SafetyPolicy.OFF,
      },
    });

  it('removes the generated image once the upscaled one is published', async () => {
    const { prefix, alice } = await setup();
    const generated: string[] = [];
    await consumer(prefix, 'inference', async (ctx) => {
      const image = writeStageImage(`${ctx.data.jobId}-gen.png`);
      generated.push(image.path);
      return { images: [image] };
    });
    await consumer(prefix, 'postprocessing', async (ctx) => ({
      images: [writeStageImage(`${ctx.data.jobId}-up.png`)],
    }));
    const { job } = await call(alice.submitJob, upscaled());
    const done = await until(alice, job!.id, S.SUCCEEDED);
    expect(done.images[0]!.path).toBe(join(ARTIFACT_ROOT, `${job!.id}-up.png`));
    expect(existsSync(done.images[0]!.path)).toBe(true);
    await waitFor(() => !existsSync(generated[0]!), { description: 'generated image removed' });
  });

  it('removes the generated image when a later stage fails', async () => {
    const { prefix, alice } = await setup();
    const generated: string[] = [];
    await consumer(prefix, 'inference', async (ctx) => {
      const image = writeStageImage(`${ctx.data.jobId}-gen.png`);
      generated.push(image.path);
      return { images: [image] };
    });
    await consumer(prefix, 'postprocessing', async () => {
      throw DopsError.invalidArgument('params.model_path', 'no such upscaler');
    });
    const { job } = await call(alice.submitJob, upscaled());
    await until(alice, job!.id, S.FAILED);
    expect(generated).toHaveLength(1);
    await waitFor(() => !existsSync(generated[0]!), { description: 'generated image removed' });
  });

  it('removes the generated image when the job is cancelled during its upscale', async () => {
    const { prefix, alice } = await setup();
    const generated: string[] = [];
    let upscaling = false;
    await consumer(prefix, 'inference', async (ctx) => {
      const image = writeStageImage(`${ctx.data.jobId}-gen.png`);
      generated.push(image.path);
      return { images: [image] };
    });
    await consumer(prefix, 'postprocessing', async (ctx) => {
      upscaling = true;
      await new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)));
      return { images: [] };
    });
    const { job } = await call(alice.submitJob, upscaled());
    await waitFor(() => upscaling, { timeoutMs: 20_000, description: 'upscale running' });
    expect(existsSync(generated[0]!)).toBe(true);
    await call(alice.cancelJob, { jobId: job!.id });
    await until(alice, job!.id, S.CANCELLED);
    await waitFor(() => !existsSync(generated[0]!), { description: 'generated image removed' });
  });

  it('fails a job whose image changed after its stage wrote it, and removes it', async () => {
    const { prefix, alice } = await setup();
    let path = '';
    await consumer(prefix, 'inference', async (ctx) => {
      const image = writeStageImage(`${ctx.data.jobId}.png`);
      path = image.path;
      writeFileSync(image.path, 'tampered');
      return { images: [image] };
    });
    const { job } = await call(alice.submitJob, jobRequest());
    const failed = await until(alice, job!.id, S.FAILED);
    expect(failed.error).toMatchObject({ code: commonV1.ErrorCode.INTERNAL, stage: 'generate' });
    expect(failed.images).toEqual([]);
    // Removed after the job is FAILED (settle runs once the record is stored), as in the tests above.
    await waitFor(() => !existsSync(path), { description: 'tampered image removed' });
  });
});

describe('with the S3 store on an S3-compatible server (moto)', () => {
  let moto: ChildProcess;
  let endpoint = '';
  const credentials = { accessKeyId: 'test', secretAccessKey: 'test' };

  beforeAll(async () => {
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const a = s.address();
        s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
      });
    });
    endpoint = `http://127.0.0.1:${port}`;
    moto = spawn(resolvePythonExecutable(), ['-m', 'moto.server', '-H', '127.0.0.1', '-p', String(port)], {
      stdio: 'ignore',
    });
    const admin = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials });
    await waitFor(
      () =>
        admin.send(new CreateBucketCommand({ Bucket: 'jobs' })).then(
          () => true,
          () => undefined,
        ),
      { timeoutMs: 30_000, intervalMs: 200, description: 'moto serving S3' },
    );
    admin.destroy();
  }, 60_000);
  afterAll(() => moto?.kill('SIGTERM'));

  it('puts the image in the bucket, removes the local file, serves the bytes and sweeps it', async () => {
    const root = mkdtempSync(join(tmpdir(), 'dops-s3-root-'));
    const store = new S3ArtifactStore({ bucket: 'jobs', endpoint, credentials });
    cleanup.push(async () => store.close());
    const { prefix, processing, alice } = await setup({ store, root, ttlMs: 60 * 60_000 });
    let local = '';
    let bytes = Buffer.alloc(0);
    await consumer(prefix, 'inference', async (ctx) => {
      bytes = Buffer.from(`s3 image of ${ctx.data.jobId}`);
      local = join(root, `${ctx.data.jobId}.png`);
      writeFileSync(local, bytes);
      return { images: [{ path: local, sha256: sha256(bytes), width: 64, height: 64, format: 'png' }] };
    });
    const { job } = await call(alice.submitJob, jobRequest());
    const image = (await until(alice, job!.id, S.SUCCEEDED)).images[0]!;
    expect(image).toMatchObject({ id: sha256(bytes), path: '' });
    expect(existsSync(local)).toBe(false);
    expect(await store.stat(`${job!.id}.png`)).toMatchObject({ size: bytes.length });
    const got = await download(alice, image.id!);
    expect(got.bytes.equals(bytes)).toBe(true);
    expect(got.messages[0]!.header!.sha256).toBe(sha256(got.bytes));

    // Past the TTL (as the sweep sees it): the object goes.
    expect(await processing.sweepArtifacts()).toBe(0);
    const later = await setup({ store, root, ttlMs: 1 });
    await new Promise((r) => setTimeout(r, 1_100));
    expect(await later.processing.sweepArtifacts()).toBeGreaterThanOrEqual(1);
    expect(await store.stat(`${job!.id}.png`)).toBeUndefined();
    expect((await codeOf(download(alice, image.id!))).code).toBe('NOT_FOUND');
  }, 60_000);
});
