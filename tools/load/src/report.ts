import { mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import type { GhzResult } from './ghz';
import type { JobTally } from './jobs';
import type { Thresholds } from './workload';

/** One pass/fail check of a run. */
export interface Check {
  name: string;
  /** What was measured, and the bound it is held to (`≤ 250`, `= 0`). */
  value: number;
  bound: string;
  pass: boolean;
}

const SUBMIT = /\/SubmitJob$/;

/**
 * Holds a run to its thresholds: every call answered OK (RESOURCE_EXHAUSTED, the queue's
 * backpressure, only up to its share), latency p95 per call kind, every accepted job terminal by
 * the end of the drain and none FAILED beyond the bound, every cancel target ended (CANCELLED, or
 * SUCCEEDED when it finished first) with at least one cancelled, and the images per second.
 */
export function evaluate(calls: readonly GhzResult[], jobs: JobTally, t: Thresholds): Check[] {
  const checks: Check[] = [];
  const le = (name: string, value: number, bound: number) =>
    checks.push({ name, value, bound: `≤ ${bound}`, pass: value <= bound });
  const ge = (name: string, value: number, bound: number) =>
    checks.push({ name, value, bound: `≥ ${bound}`, pass: value >= bound });
  for (const c of calls) {
    const other = Object.entries(c.statusCodes)
      .filter(([code]) => code !== 'OK' && code !== 'ResourceExhausted')
      .reduce((n, [, k]) => n + k, 0);
    ge(`${c.name}: calls made`, c.count, 1);
    le(`${c.name}: calls failed (not OK, not RESOURCE_EXHAUSTED)`, other, 0);
    le(
      `${c.name}: share answered RESOURCE_EXHAUSTED`,
      c.count ? (c.statusCodes['ResourceExhausted'] ?? 0) / c.count : 0,
      t.maxBackpressure,
    );
    le(`${c.name}: p95 ms`, c.p95Ms, SUBMIT.test(c.call) ? t.submitP95Ms : t.readP95Ms);
  }
  const state = (s: string) => jobs.byState[s] ?? 0;
  const open =
    jobs.total - state('JOB_STATE_SUCCEEDED') - state('JOB_STATE_FAILED') - state('JOB_STATE_CANCELLED');
  ge('jobs accepted', jobs.total, 1);
  le('jobs not terminal after the drain', open, 0);
  le('jobs FAILED', state('JOB_STATE_FAILED'), t.maxFailedJobs);
  const targets = Object.values(jobs.cancelTargets).reduce((a, b) => a + b, 0);
  const ended =
    (jobs.cancelTargets['JOB_STATE_CANCELLED'] ?? 0) + (jobs.cancelTargets['JOB_STATE_SUCCEEDED'] ?? 0);
  le('cancel targets not CANCELLED or SUCCEEDED', targets - ended, 0);
  ge('cancel targets CANCELLED', jobs.cancelTargets['JOB_STATE_CANCELLED'] ?? 0, 1);
  ge(
    'images per second',
    jobs.spanS > 0 ? Math.round((jobs.images / jobs.spanS) * 100) / 100 : 0,
    t.minImagesPerS,
  );
  return checks;
}

/** A run's record: what ran, what it measured, and the verdict. */
export interface LoadReport {
  profile: string;
  target: string;
  startedAt: string;
  host: string;
  thresholds: Thresholds;
  calls: GhzResult[];
  jobs: JobTally;
  checks: Check[];
  passed: boolean;
}

/** Writes `<name>.json` and `<name>.md` into `dir`; returns their paths. */
export function writeReport(dir: string, name: string, report: LoadReport): { json: string; md: string } {
  mkdirSync(dir, { recursive: true });
  const json = path.join(dir, `${name}.json`);
  const md = path.join(dir, `${name}.md`);
  writeFileSync(json, `${JSON.stringify(report, null, 2)}\n`);
  const lines = [
    `# Load test: ${report.profile} — ${report.passed ? 'PASSED' : 'FAILED'}`,
    '',
    `Target ${report.target}, started ${report.startedAt} on ${report.host}. Tool: ghz (tools/load/install-ghz.sh).`,
    '',
    '## Calls (ghz)',
    '',
    '| scenario | calls | calls/s | p50 ms | p95 ms | p99 ms | status codes |',
    '|---|---|---|---|---|---|---|',
    ...report.calls.map(
      (c) =>
        `| ${c.name} | ${c.count} | ${c.rps} | ${c.p50Ms} | ${c.p95Ms} | ${c.p99Ms} | ${Object.entries(
          c.statusCodes,
        )
          .map(([k, v]) => `${k} ${v}`)
          .join(', ')} |`,
    ),
    '',
    '## Jobs',
    '',
    `${report.jobs.total} jobs, ${report.jobs.images} images in ${report.jobs.spanS} s (first submit → last job done): ` +
      `${report.jobs.spanS > 0 ? (report.jobs.images / report.jobs.spanS).toFixed(2) : 0} images/s. ` +
      `Submit → SUCCEEDED p50 ${report.jobs.doneP50Ms} ms, p95 ${report.jobs.doneP95Ms} ms (queueing included).`,
    '',
    `By state: ${JSON.stringify(report.jobs.byState)}; errors: ${JSON.stringify(report.jobs.byErrorCode)} (${JSON.stringify(report.jobs.errorSamples)}); cancel targets: ${JSON.stringify(report.jobs.cancelTargets)}.`,
    '',
    '## Thresholds',
    '',
    '| check | value | bound | |',
    '|---|---|---|---|',
    ...report.checks.map((c) => `| ${c.name} | ${c.value} | ${c.bound} | ${c.pass ? 'pass' : '**FAIL**'} |`),
    '',
  ];
  writeFileSync(md, lines.join('\n'));
  return { json, md };
}
