import type { GhzRun } from './ghz';

const SERVICE = 'dops.processing.v1.ProcessingService';

/** What the workload is made of: the models to generate with and who calls. */
export interface WorkloadOptions {
  profile: Profile;
  /** Model ids of the registry: the first an SD 1.5 checkpoint, the second an SDXL one (optional). */
  models: string[];
  /** An upscaler path in the model roots, for the workflow scenario (omitted without one). */
  upscaler?: string;
  /** Bearer tokens of three clients (fairness across clients is part of the load). */
  tokens: [string, string, string];
}

/** Sizes, steps, rates and thresholds of one kind of run. */
export interface Profile {
  name: 'smoke' | 'full';
  /** Seconds each constant-rate scenario runs. */
  durationS: number;
  /** Submits per second of each submit scenario. */
  submitRps: number;
  sd15Sizes: [number, number][];
  sdxlSizes: [number, number][];
  steps: number;
  batchCounts: number[];
  /** Jobs submitted up front at low priority and cancelled under load. */
  cancels: number;
  /** ListJobs calls per second (the read path under load). */
  listRps: number;
  thresholds: Thresholds;
}

/** Pass/fail bounds of a run. */
export interface Thresholds {
  /** Longest SubmitJob p95, ms. */
  submitP95Ms: number;
  /** Longest ListJobs / CancelJob p95, ms. */
  readP95Ms: number;
  /** Share of calls answered RESOURCE_EXHAUSTED (the queue's backpressure) at most. */
  maxBackpressure: number;
  /** Jobs that end FAILED, at most (any other non-OK call fails the run). */
  maxFailedJobs: number;
  /** Seconds after the load for every accepted job to be terminal. */
  drainS: number;
  /** Images per second over the run (first submit → last job done), at least. */
  minImagesPerS: number;
}

export const PROFILES: Record<Profile['name'], Profile> = {
  // CI: the tiny models on CPU, 20 s of load (tools/e2e/test/load-smoke.int-spec.ts); what it
  // submits took a 2-core machine shared with other test runs (load average 9) 270 s to finish.
  smoke: {
    name: 'smoke',
    durationS: 20,
    submitRps: 1,
    sd15Sizes: [
      [64, 64],
      [64, 96],
    ],
    sdxlSizes: [[64, 64]],
    steps: 1,
    batchCounts: [1, 2],
    cancels: 12,
    listRps: 2,
    thresholds: {
      submitP95Ms: 1_000,
      readP95Ms: 1_000,
      maxBackpressure: 0,
      maxFailedJobs: 0,
      drainS: 420,
      minImagesPerS: 0.1,
    },
  },
  // A GPU node (tools/load/README.md): real checkpoints at their native sizes, 5 minutes.
  full: {
    name: 'full',
    durationS: 300,
    submitRps: 1,
    sd15Sizes: [
      [512, 512],
      [512, 768],
      [768, 512],
    ],
    sdxlSizes: [
      [1024, 1024],
      [832, 1216],
    ],
    steps: 25,
    batchCounts: [1, 2, 4],
    cancels: 60,
    listRps: 5,
    thresholds: {
      submitP95Ms: 250,
      readP95Ms: 250,
      maxBackpressure: 0.05,
      maxFailedJobs: 0,
      drainS: 1_800,
      minImagesPerS: 0.5,
    },
  },
};

function params(
  model: string,
  [width, height]: [number, number],
  steps: number,
  batchCount: number,
  tag: string,
) {
  return {
    modelId: model,
    prompt: `load ${tag}: a lighthouse on a cliff at dawn, request {{.RequestNumber}}`,
    negativePrompt: 'blurry',
    width,
    height,
    steps,
    // ghz fills the template per call: every image its own seed.
    seed: '{{.RequestNumber}}',
    batchCount,
  };
}

/**
 * The mixed workload's constant-rate scenarios, run at once: SD 1.5 txt2img of several sizes with
 * and without the safety stage, SDXL batches (when a second model is given), txt2img → upscale →
 * safety workflows (with an upscaler), and ListJobs reads. Cancels are `cancelRun`'s.
 */
export function scenarios(options: WorkloadOptions): GhzRun[] {
  const { profile: p, models, tokens } = options;
  const [sd15, sdxl] = models;
  if (!sd15) throw new Error('at least one model id is needed');
  const runs: GhzRun[] = [
    {
      name: 'sd15-txt2img',
      call: `${SERVICE}/SubmitJob`,
      token: tokens[0],
      data: p.sd15Sizes.flatMap((size, i) =>
        // Safety off and the service default (flag: the safety stage on postprocessing) in turn.
        ['SAFETY_POLICY_OFF', 'SAFETY_POLICY_UNSPECIFIED'].map((safety) => ({
          spec: { template: 'txt2img', params: params(sd15, size, p.steps, 1, `sd15-${i}`), safety },
        })),
      ),
      rps: p.submitRps,
      durationS: p.durationS,
      concurrency: 4,
    },
    {
      name: 'list-jobs',
      call: `${SERVICE}/ListJobs`,
      token: tokens[1],
      data: { pageSize: 20 },
      rps: p.listRps,
      durationS: p.durationS,
      concurrency: 2,
    },
  ];
  if (sdxl) {
    runs.push({
      name: 'sdxl-batches',
      call: `${SERVICE}/SubmitJob`,
      token: tokens[1],
      data: p.sdxlSizes.flatMap((size, i) =>
        p.batchCounts.map((n) => ({
          spec: {
            template: 'txt2img',
            params: params(sdxl, size, p.steps, n, `sdxl-${i}-x${n}`),
            safety: 'SAFETY_POLICY_OFF',
          },
        })),
      ),
      rps: p.submitRps,
      durationS: p.durationS,
      concurrency: 4,
    });
  }
  if (options.upscaler) {
    runs.push({
      name: 'workflow-upscale-safety',
      call: `${SERVICE}/SubmitJob`,
      token: tokens[2],
      data: {
        spec: {
          template: 'txt2img',
          params: params(sd15, p.sd15Sizes[0]!, p.steps, 1, 'workflow'),
          upscale: { modelPath: options.upscaler },
          safety: 'SAFETY_POLICY_FLAG',
        },
      },
      rps: p.submitRps,
      durationS: p.durationS,
      concurrency: 4,
    });
  }
  return runs;
}

/** The job submitted up front (low priority, so it waits behind the load) for each cancel. */
export function cancelTargetSpec(options: WorkloadOptions): Record<string, unknown> {
  const p = options.profile;
  return {
    template: 'txt2img',
    params: { ...params(options.models[0]!, p.sd15Sizes[0]!, p.steps, 1, 'cancel'), seed: '7' },
    safety: 'SAFETY_POLICY_OFF',
  };
}

/** CancelJob of every target, spread over the load (one job id per call, round-robin). */
export function cancelRun(options: WorkloadOptions, jobIds: string[]): GhzRun {
  return {
    name: 'cancel',
    call: `${SERVICE}/CancelJob`,
    token: options.tokens[0],
    data: jobIds.map((jobId) => ({ jobId })),
    rps: 1,
    total: jobIds.length,
    concurrency: 1,
  };
}
