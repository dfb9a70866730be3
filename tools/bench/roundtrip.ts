// Round trip service → worker → service over the stdio JSON-RPC protocol, and the same through
// gRPC, each against a baseline measured in the same run. Writes tools/bench/results/roundtrip-<host>.{json,md}.
//   npx tsx tools/bench/roundtrip.ts [--n 2000]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { call, createClient } from '@dops/grpc-client';
import { deviceV1, memoryV1 } from '@dops/proto';
import { startTestServer, testCredentials, testWorkerConfig } from '@dops/testing';
import { createLogger } from '@dops/telemetry';
import { DeviceFleet, deviceHostService, memoryHostService, workerPoolFromConfig } from '@dops/worker-pool';

const n = Number(process.argv[process.argv.indexOf('--n') + 1]) || 2000;

interface Stats {
  n: number;
  medianUs: number;
  p90Us: number;
  p99Us: number;
}

async function measure(label: string, count: number, fn: () => Promise<unknown>): Promise<Stats> {
  for (let i = 0; i < Math.min(200, count); i += 1) await fn(); // warm-up
  const samples: number[] = [];
  for (let i = 0; i < count; i += 1) {
    const t = process.hrtime.bigint();
    await fn();
    samples.push(Number(process.hrtime.bigint() - t) / 1000);
  }
  samples.sort((a, b) => a - b);
  const q = (p: number) =>
    Math.round(samples[Math.min(samples.length - 1, Math.floor(p * samples.length))]! * 10) / 10;
  const stats = { n: count, medianUs: q(0.5), p90Us: q(0.9), p99Us: q(0.99) };
  process.stdout.write(
    `${label.padEnd(58)} median ${stats.medianUs} µs  p90 ${stats.p90Us}  p99 ${stats.p99Us}\n`,
  );
  return stats;
}

async function main(): Promise<void> {
  const pool = workerPoolFromConfig(
    'bench',
    testWorkerConfig({ heartbeatIntervalMs: 60_000 }),
    createLogger({ name: 'bench', level: 'silent' }),
  );
  await pool.start();
  const worker = pool.list()[0]!.supervisor;
  const server = await startTestServer([
    deviceHostService(new DeviceFleet(pool, 'bench')),
    memoryHostService(pool, 'bench'),
  ]);
  // DeviceHostService: the device calls inference and postprocessing serve over their workers.
  const devices = createClient(deviceV1.DeviceHostServiceClient, server.address, {
    credentials: testCredentials('device', 'mtls'),
  });
  // MemoryHostService: what inference and postprocessing serve over their workers (internal callers).
  const memory = createClient(memoryV1.MemoryHostServiceClient, server.address, {
    credentials: testCredentials('memory', 'mtls'),
  });
  try {
    const results = {
      baselineNodePromise: await measure('baseline: resolved promise in Node', n, () => Promise.resolve()),
      workerPingControlThread: await measure('stdio round trip: worker.ping (control thread)', n, () =>
        worker.request('worker.ping'),
      ),
      workerStepExecThread: await measure(
        'stdio round trip: diagnostics.steps 1×0 ms (execution thread)',
        n,
        () => worker.request('diagnostics.steps', { steps: 1, stepMs: 0 }),
      ),
      grpcNoWorker: await measure('gRPC baseline: ListDevices (answered in Node)', n, () =>
        call(devices.listDevices, {}),
      ),
      grpcWithWorker: await measure('gRPC → service → worker memory.stats → client (GetMemory)', n, () =>
        call(memory.getMemory, {}),
      ),
      workerMemoryStats: await measure('stdio round trip: memory.stats (the work inside GetMemory)', n, () =>
        worker.request('memory.stats'),
      ),
    };
    const machine = {
      cpu: os.cpus()[0]?.model,
      logicalCores: os.cpus().length,
      memGiB: Math.round(os.totalmem() / 2 ** 30),
      node: process.version,
      platform: `${os.platform()} ${os.release()}`,
    };
    const ratios = {
      workerPingOverGrpcBaseline: +(
        results.workerPingControlThread.medianUs / results.grpcNoWorker.medianUs
      ).toFixed(2),
      grpcWithWorkerOverGrpcBaseline: +(
        results.grpcWithWorker.medianUs / results.grpcNoWorker.medianUs
      ).toFixed(2),
    };
    const out = path.resolve(__dirname, 'results');
    fs.mkdirSync(out, { recursive: true });
    const host = process.env['BENCH_HOST'] ?? 'cpu';
    fs.writeFileSync(
      path.join(out, `roundtrip-${host}.json`),
      JSON.stringify({ date: new Date().toISOString(), machine, results, ratios }, null, 2) + '\n',
    );
    const rows = Object.entries(results).map(
      ([k, v]) => `| ${k} | ${v.n} | ${v.medianUs} | ${v.p90Us} | ${v.p99Us} |`,
    );
    fs.writeFileSync(
      path.join(out, `roundtrip-${host}.md`),
      [
        `# Round trip service → worker → service (${new Date().toISOString().slice(0, 10)})`,
        '',
        `Machine: ${machine.cpu}, ${machine.logicalCores} logical cores, ${machine.memGiB} GiB, Node ${machine.node}, ${machine.platform}. Sequential calls, one in flight.`,
        '',
        '| measurement | n | median µs | p90 µs | p99 µs |',
        '|---|---|---|---|---|',
        ...rows,
        '',
        `Ratios (median): worker.ping / gRPC baseline = ${ratios.workerPingOverGrpcBaseline}; GetMemory (gRPC + worker) / gRPC baseline = ${ratios.grpcWithWorkerOverGrpcBaseline}.`,
        '',
      ].join('\n'),
    );
  } finally {
    devices.close();
    memory.close();
    await server.stop();
    await pool.stop();
  }
}

void main();
