import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';

/** The repository root. */
export const ROOT = path.resolve(__dirname, '../../..');
/** The descriptor set proto:generate builds: ghz reads the API from it (no reflection needed). */
export const PROTOSET = path.join(ROOT, 'libs/proto/descriptors/dops.binpb');

/** How ghz reaches the public API. */
export interface Target {
  address: string;
  caFile: string;
}

/** One ghz run: a method called at a constant rate for a while, or a fixed number of times. */
export interface GhzRun {
  name: string;
  /** `dops.processing.v1.ProcessingService/SubmitJob`. */
  call: string;
  /** The bearer token this scenario's client calls with. */
  token: string;
  /** A message (ghz call template: `{{.RequestNumber}}` ...) or a list of them, used round-robin. */
  data: unknown;
  rps: number;
  /** Seconds; with `total` unset. */
  durationS?: number;
  /** Calls; with `durationS` unset. */
  total?: number;
  concurrency: number;
}

/** What ghz measured for one run (its JSON report, reduced). */
export interface GhzResult {
  name: string;
  call: string;
  count: number;
  rps: number;
  /** Latency percentiles of the calls, ms. */
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  /** gRPC status name → calls (`OK`, `ResourceExhausted`, ...). */
  statusCodes: Record<string, number>;
  /** Error message → calls. */
  errors: Record<string, number>;
}

/**
 * Runs ghz once and returns its reduced report; the full JSON report is kept in `outDir`.
 * Rejects when ghz cannot run (bad flags, unreachable target); RPC errors are counted, not thrown.
 */
export function runGhz(ghz: string, target: Target, run: GhzRun, outDir: string): Promise<GhzResult> {
  mkdirSync(outDir, { recursive: true });
  const dataFile = path.join(outDir, `${run.name}.data.json`);
  const report = path.join(outDir, `${run.name}.ghz.json`);
  writeFileSync(dataFile, JSON.stringify(run.data));
  const args = [
    `--protoset=${PROTOSET}`,
    `--call=${run.call}`,
    `--cacert=${target.caFile}`,
    `--metadata=${JSON.stringify({ authorization: `Bearer ${run.token}` })}`,
    `--data-file=${dataFile}`,
    `--rps=${run.rps}`,
    `--concurrency=${run.concurrency}`,
    '--connections=1',
    '--timeout=30s',
    '--format=json',
    `--output=${report}`,
    `--name=${run.name}`,
    ...(run.durationS !== undefined
      ? [`--duration=${run.durationS}s`, '--duration-stop=wait']
      : [`--total=${run.total}`]),
    target.address,
  ];
  return new Promise((resolve, reject) => {
    execFile(ghz, args, { timeout: 600_000, maxBuffer: 16 * 1024 * 1024 }, (err, _stdout, stderr) => {
      // ghz exits non-zero when calls failed; the report still says how many and why.
      let parsed: Record<string, any>;
      try {
        parsed = JSON.parse(readFileSync(report, 'utf8'));
      } catch {
        reject(new Error(`ghz ${run.name} wrote no report: ${err?.message ?? ''} ${stderr}`));
        return;
      }
      resolve(reduce(run, parsed));
    });
  });
}

function reduce(run: GhzRun, report: Record<string, any>): GhzResult {
  const latency = (pct: number): number => {
    const row = (report['latencyDistribution'] ?? []).find((d: any) => d.percentage === pct);
    return row ? Math.round(row.latency / 1e4) / 100 : NaN;
  };
  return {
    name: run.name,
    call: run.call,
    count: report['count'] ?? 0,
    rps: Math.round((report['rps'] ?? 0) * 100) / 100,
    p50Ms: latency(50),
    p95Ms: latency(95),
    p99Ms: latency(99),
    statusCodes: report['statusCodeDistribution'] ?? {},
    errors: report['errorDistribution'] ?? {},
  };
}
