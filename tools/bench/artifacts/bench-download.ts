// Artifact download bench: Redis + Processing behind a real TLS gRPC server on loopback (in this
// process), a BullMQ stage consumer that writes images of a few sizes into a directory artifact
// store, then DownloadArtifact of each, chunked (256 KiB messages) and inline where allowed, with
// the client hashing what arrives as the CLI does. Reports p50 time and MB/s per size, plus the
// publish cost (stage completed → job SUCCEEDED, which re-hashes the file and indexes it).
// Writes tools/bench/results/artifact-download-<host>.{json,md}.
//   npx tsx tools/bench/artifacts/bench-download.ts [--repeats 20]
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DirectoryArtifactStore } from '@dops/artifact-store';
import { call, createClient, stream } from '@dops/grpc-client';
import { commonV1, inferenceV1, processingV1 } from '@dops/proto';
import { Processing, processingService } from '@dops/processing';
import { NodeAnnouncer, StageWorker, createRedis, startTestRedis } from '@dops/queue';
import { startTestServer, testCredentials, waitFor } from '@dops/testing';

const i = process.argv.indexOf('--repeats');
const REPEATS = i > 0 ? Number(process.argv[i + 1]) : 20;
const HOST = process.env['BENCH_HOST'] ?? 'cpu';
const SIZES = [64 * 1024, 1024 * 1024, 3 * 1024 * 1024, 16 * 1024 * 1024];
const ROOT = path.resolve(__dirname, '../../..');

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main() {
  const redis = await startTestRedis();
  const client = createRedis(redis.url);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'dops-bench-artifacts-'));
  const prefix = `bench-dl-${process.pid}`;
  const announcer = new NodeAnnouncer(client, {
    prefix,
    nodeId: 'bench',
    service: 'inference',
    devices: () => [{ id: 'cpu:0', backend: 'cpu', state: 'busy', residentModels: ['m'], activeJobs: 1 }],
  });
  await announcer.start();
  const processing = new Processing({
    redisUrl: redis.url,
    prefix,
    retentionMs: 600_000,
    idempotencyTtlMs: 600_000,
    maxQueued: 10_000,
    retryAfterMs: 1_000,
    maxBatchItems: 10,
    defaultDeadlineMs: 600_000,
    attempts: 1,
    backoffMs: 10,
    maxImageBytes: 1_000_000,
    inputRoot: path.join(os.tmpdir(), 'dops-in'),
    defaultSafety: 'off',
    maxQueuedPerClient: 10_000,
    submitsPerSecond: 10_000,
    submitBurst: 0,
    maxOpenSessions: 10,
    sessionTtlMs: 600_000,
    artifacts: { store: new DirectoryArtifactStore(root), root, ttlMs: 600_000 },
  });
  await processing.start();
  const server = await startTestServer([processingService(processing)]);
  const api = createClient(processingV1.ProcessingServiceClient, server.address, {
    credentials: testCredentials('alice'),
    deadlineMs: 60_000,
  });
  // Jobs run one at a time, each with the size of the round it was submitted in.
  let currentSize = 0;
  const completedAt = new Map<string, number>();
  const worker = new StageWorker({
    queues: ['inference'],
    redisUrl: redis.url,
    prefix,
    concurrency: 1,
    process: async (ctx) => {
      const size = currentSize;
      const data = Buffer.alloc(size);
      for (let k = 0; k < size; k += 4) data.writeUInt32LE((k * 2654435761) >>> 0, k);
      const file = path.join(root, `${ctx.data.jobId}.png`);
      fs.writeFileSync(file, data);
      completedAt.set(ctx.data.jobId, performance.now());
      const sha256 = createHash('sha256').update(data).digest('hex');
      return { images: [{ path: file, sha256, width: 64, height: 64, format: 'png' }] };
    },
  });
  await worker.start();

  const rows: Record<string, unknown>[] = [];
  try {
    for (const size of SIZES) {
      const publish: number[] = [];
      const ids: string[] = [];
      for (let r = 0; r < 5; r++) {
        const req = processingV1.SubmitJobRequest.fromPartial({
          spec: {
            template: 'txt2img',
            safety: commonV1.SafetyPolicy.OFF,
            params: inferenceV1.GenerationParams.fromPartial({
              modelId: 'm',
              steps: 1,
              width: 64,
              height: 64,
            }),
          },
        });
        currentSize = size;
        const { job } = await call(api.submitJob, req);
        const done = await waitFor(
          async () => {
            const { job: j } = await call(api.getJob, { jobId: job!.id });
            return j!.state === processingV1.JobState.SUCCEEDED ? j : undefined;
          },
          { timeoutMs: 60_000, intervalMs: 2 },
        );
        publish.push(
          done.updatedAt!.getTime() - (completedAt.get(job!.id)! - performance.now() + Date.now()),
        );
        ids.push(done.images[0]!.id!);
      }
      for (const inline of size <= 3 * 1024 * 1024 ? [false, true] : [false]) {
        const times: number[] = [];
        for (let r = 0; r < REPEATS; r++) {
          const t = performance.now();
          const hash = createHash('sha256');
          let got = 0;
          for await (const m of stream(api.downloadArtifact, {
            artifactId: ids[r % ids.length]!,
            inlineMaxBytes: inline ? 3 * 1024 * 1024 : 0,
          })) {
            hash.update(m.data);
            got += m.data.length;
          }
          hash.digest('hex');
          if (got !== size) throw new Error(`got ${got} of ${size} bytes`);
          times.push(performance.now() - t);
        }
        const p50 = median(times);
        rows.push({
          sizeBytes: size,
          mode: inline ? 'inline' : 'chunked',
          downloads: REPEATS,
          p50Ms: Math.round(p50 * 100) / 100,
          mbPerS: Math.round((size / 1e6 / (p50 / 1000)) * 10) / 10,
          publishP50Ms: Math.round(median(publish) * 10) / 10,
        });
        process.stdout.write(`${JSON.stringify(rows.at(-1))}\n`);
      }
    }
  } finally {
    api.close();
    await worker.close();
    await server.stop();
    await processing.close();
    await announcer.stop();
    client.disconnect();
    await redis.stop();
    fs.rmSync(root, { recursive: true, force: true });
  }
  const out = path.join(ROOT, 'tools/bench/results', `artifact-download-${HOST}`);
  const meta = {
    host: HOST,
    cpus: os.cpus().length,
    loadAverage1m: Math.round(os.loadavg()[0]! * 10) / 10,
    node: process.version,
    date: new Date().toISOString(),
  };
  fs.writeFileSync(`${out}.json`, `${JSON.stringify({ ...meta, rows }, null, 2)}\n`);
  const md = [
    `# Artifact download (${HOST}, ${meta.cpus} CPUs, ${meta.date.slice(0, 10)})`,
    '',
    'DownloadArtifact over TLS gRPC on loopback, directory store, client hashing (sha256) as the CLI does.',
    `Load average (1 min) at the end: ${meta.loadAverage1m} on ${meta.cpus} CPUs shared with other work: the figures are noisy.`,
    '`publish` = the stage returned → job SUCCEEDED recorded (BullMQ event delivery, re-hash, index, state write), p50 of 5 jobs.',
    '',
    '| size | mode | p50 ms | MB/s | publish p50 ms |',
    '|---:|---|---:|---:|---:|',
    ...rows.map(
      (r) =>
        `| ${Number(r['sizeBytes']) / 1024} KiB | ${r['mode']} | ${r['p50Ms']} | ${r['mbPerS']} | ${r['publishP50Ms']} |`,
    ),
    '',
  ].join('\n');
  fs.writeFileSync(`${out}.md`, md);
  process.stdout.write(`wrote ${out}.json and .md\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
