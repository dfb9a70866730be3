import type { GhzResult } from './ghz';
import type { JobTally } from './jobs';
import { evaluate } from './report';
import { PROFILES } from './workload';

const t = PROFILES.smoke.thresholds;
const submit = (over: Partial<GhzResult> = {}): GhzResult => ({
  name: 'sd15-txt2img',
  call: 'dops.processing.v1.ProcessingService/SubmitJob',
  count: 20,
  rps: 1,
  p50Ms: 10,
  p95Ms: 50,
  p99Ms: 60,
  statusCodes: { OK: 20 },
  errors: {},
  ...over,
});
const jobs = (over: Partial<JobTally> = {}): JobTally => ({
  total: 32,
  byState: { JOB_STATE_SUCCEEDED: 20, JOB_STATE_CANCELLED: 12 },
  byErrorCode: { ERROR_CODE_CANCELLED: 12 },
  errorSamples: {},
  images: 20,
  spanS: 40,
  doneP50Ms: 1000,
  doneP95Ms: 2000,
  cancelTargets: { JOB_STATE_CANCELLED: 12 },
  ...over,
});
const failed = (calls: GhzResult[], tally: JobTally) =>
  evaluate(calls, tally, t)
    .filter((c) => !c.pass)
    .map((c) => c.name);

describe('evaluate', () => {
  it('passes a clean run', () => {
    expect(failed([submit()], jobs())).toEqual([]);
  });

  it('fails on a non-OK call, on backpressure beyond its share and on a slow p95', () => {
    expect(failed([submit({ statusCodes: { OK: 19, Unavailable: 1 } })], jobs())).toEqual([
      'sd15-txt2img: calls failed (not OK, not RESOURCE_EXHAUSTED)',
    ]);
    expect(failed([submit({ statusCodes: { OK: 19, ResourceExhausted: 1 } })], jobs())).toEqual([
      'sd15-txt2img: share answered RESOURCE_EXHAUSTED',
    ]);
    expect(failed([submit({ p95Ms: 1_001 })], jobs())).toEqual(['sd15-txt2img: p95 ms']);
    expect(failed([submit({ count: 0, statusCodes: {} })], jobs())).toEqual(['sd15-txt2img: calls made']);
  });

  it('fails on jobs left open, FAILED jobs, cancels that did not end, and no throughput', () => {
    expect(
      failed(
        [submit()],
        jobs({
          total: 33,
          byState: { JOB_STATE_SUCCEEDED: 20, JOB_STATE_CANCELLED: 12, JOB_STATE_RUNNING: 1 },
        }),
      ),
    ).toEqual(['jobs not terminal after the drain']);
    expect(
      failed(
        [submit()],
        jobs({ byState: { JOB_STATE_SUCCEEDED: 19, JOB_STATE_FAILED: 1, JOB_STATE_CANCELLED: 12 } }),
      ),
    ).toEqual(['jobs FAILED']);
    expect(
      failed([submit()], jobs({ cancelTargets: { JOB_STATE_SUCCEEDED: 11, JOB_STATE_FAILED: 1 } })),
    ).toEqual(['cancel targets not CANCELLED or SUCCEEDED', 'cancel targets CANCELLED']);
    expect(failed([submit()], jobs({ images: 2, spanS: 40 }))).toEqual(['images per second']);
  });
});
