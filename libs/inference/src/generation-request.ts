import { DopsError } from '@dops/errors';
import { inferenceV1 } from '@dops/proto';
import { Violations } from '@dops/validation';
import type { WorkerCapabilities } from './worker-capabilities';

/** Scheduler names the worker knows (python-workers inference/request.py SCHEDULER_NAMES). */
export const SCHEDULER_NAMES = [
  'Euler',
  'Euler a',
  'DPM++ 2M',
  'DPM++ 2M Karras',
  'DDIM',
  'UniPC',
  'LCM',
] as const;
const DEFAULT_SCHEDULER = 'Euler a';
const MAX_SEED = Number.MAX_SAFE_INTEGER;
const MAX_PROMPT_CHARS = 20_000;
const MAX_MODEL_ID = 200;
// Latent previews "at most a few times a second".
const MIN_PREVIEW_INTERVAL_S = 0.25;
const MAX_PREVIEW_INTERVAL_S = 3600;
// Sent when the caller wants no previews: the worker then writes none within the hour.
const NO_PREVIEWS_S = MAX_PREVIEW_INTERVAL_S;

/** Limits used before a model's capabilities are known (the worker's RequestLimits defaults). */
const DEFAULT_LIMITS = {
  size: { min: 64, max: 2048, multiple: 8 },
  steps: { max: 150 },
  cfgScale: { max: 30 },
  batchCount: { max: 8 },
  maxLoras: 8,
  maxControlnets: 4,
};

export type WorkerMode = 'txt2img' | 'img2img' | 'inpaint';

const MODES: Partial<Record<inferenceV1.Mode, WorkerMode>> = {
  [inferenceV1.Mode.UNSPECIFIED]: 'txt2img',
  [inferenceV1.Mode.TXT2IMG]: 'txt2img',
  [inferenceV1.Mode.IMG2IMG]: 'img2img',
  [inferenceV1.Mode.INPAINT]: 'inpaint',
};

/** Where request paths may point. */
export interface RequestRoots {
  /** Images read by the worker (init image, mask, ControlNet hints). */
  inputRoot: string;
  /** LoRA and ControlNet files; relative paths resolve against the first. */
  modelRoots: readonly string[];
}

/** `inference.generate` params as the worker takes them (camelCase JSON, python request.py). */
export type WorkerGenerateParams = Record<string, unknown> & { model: string; mode: WorkerMode };

const PARAMS = 'params';

/**
 * Checks every field of `params` against the model's capabilities (the worker's defaults while
 * they are unknown) and returns the worker's JSON. Throws INVALID_ARGUMENT listing every bad
 * field as its proto path (`params.width`, `params.loras[1].weight`), then FAILED_PRECONDITION
 * naming `params.mode` for inpaint on a model without an inpainting UNet (and no fallback).
 * Paths come back absolute; `outputDir` is relative to the worker's artifact root.
 */
export function toWorkerParams(
  params: inferenceV1.GenerationParams | undefined,
  capabilities: WorkerCapabilities | undefined,
  roots: RequestRoots,
  extra: { outputDir: string; previewIntervalSeconds: number },
): WorkerGenerateParams {
  if (!params) throw DopsError.invalidArgument(PARAMS, 'is required');
  const v = new Violations(PARAMS);
  const limits = {
    size: capabilities?.size ?? DEFAULT_LIMITS.size,
    stepsMax: capabilities?.steps.max ?? DEFAULT_LIMITS.steps.max,
    cfgMax: capabilities?.cfgScale.max ?? DEFAULT_LIMITS.cfgScale.max,
    batchMax: capabilities?.batchCount.max ?? DEFAULT_LIMITS.batchCount.max,
    maxLoras: capabilities?.maxLoras ?? DEFAULT_LIMITS.maxLoras,
    maxControlnets: capabilities?.maxControlnets ?? DEFAULT_LIMITS.maxControlnets,
    schedulers: capabilities?.schedulers ?? [...SCHEDULER_NAMES],
  };

  if (!params.modelId) v.add('model_id', 'is required');
  else if (params.modelId.length > MAX_MODEL_ID)
    v.add('model_id', `must be at most ${MAX_MODEL_ID} characters`);
  const mode = MODES[params.mode];
  if (!mode) v.add('mode', 'must be MODE_TXT2IMG, MODE_IMG2IMG or MODE_INPAINT');
  if (params.prompt.length > MAX_PROMPT_CHARS)
    v.add('prompt', `must be at most ${MAX_PROMPT_CHARS} characters`);
  if (params.negativePrompt.length > MAX_PROMPT_CHARS)
    v.add('negative_prompt', `must be at most ${MAX_PROMPT_CHARS} characters`);

  for (const field of ['width', 'height'] as const) {
    const value = params[field];
    if (value === undefined) continue;
    if (value < limits.size.min || value > limits.size.max)
      v.add(field, `must be between ${limits.size.min} and ${limits.size.max}`);
    else if (value % limits.size.multiple !== 0)
      v.add(field, `must be a multiple of ${limits.size.multiple}`);
  }
  if (params.steps !== undefined && (params.steps < 1 || params.steps > limits.stepsMax))
    v.add('steps', `must be between 1 and ${limits.stepsMax}`);
  if (params.cfgScale !== undefined && !inRange(params.cfgScale, 0, limits.cfgMax))
    v.add('cfg_scale', `must be between 0 and ${limits.cfgMax}`);
  if (
    params.seed !== undefined &&
    !(Number.isSafeInteger(params.seed) && params.seed >= 0 && params.seed <= MAX_SEED)
  ) {
    v.add('seed', `must be between 0 and ${MAX_SEED}`);
  }
  if (params.batchCount > limits.batchMax) v.add('batch_count', `must be between 1 and ${limits.batchMax}`);
  const scheduler = params.scheduler || DEFAULT_SCHEDULER;
  if (!limits.schedulers.includes(scheduler))
    v.add('scheduler', `must be one of ${limits.schedulers.join(', ')}`);

  const worker: Record<string, unknown> = {
    mode: mode ?? 'txt2img',
    model: params.modelId,
    prompt: params.prompt,
    negativePrompt: params.negativePrompt,
    scheduler,
    batchCount: Math.max(params.batchCount, 1),
    allowInpaintFallback: params.allowInpaintFallback,
    outputDir: extra.outputDir,
    previewIntervalS: previewInterval(extra.previewIntervalSeconds, v),
  };
  for (const [key, value] of [
    ['width', params.width],
    ['height', params.height],
    ['steps', params.steps],
    ['cfgScale', params.cfgScale],
    ['seed', params.seed],
  ] as const) {
    if (value !== undefined) worker[key] = value;
  }

  if (mode === 'txt2img') {
    if (params.initImage) v.add('init_image', 'is only allowed with MODE_IMG2IMG or MODE_INPAINT');
    if (params.mask) v.add('mask', 'is only allowed with MODE_INPAINT');
    if (params.strength !== undefined) v.add('strength', 'is only allowed with MODE_IMG2IMG or MODE_INPAINT');
  } else if (mode) {
    if (params.strength !== undefined) {
      if (!inRange(params.strength, 0, 1)) v.add('strength', 'must be between 0 and 1');
      // diffusers runs int(steps × strength) steps and fails on zero.
      else if (Math.floor((params.steps ?? 20) * params.strength) < 1)
        v.add('strength', `× steps leaves no denoising step`);
      else worker.strength = params.strength;
    }
    worker.initImage = v.confined(params.initImage, [roots.inputRoot], 'init_image', 'the input root');
    if (mode === 'inpaint')
      worker.mask = v.confined(params.mask, [roots.inputRoot], 'mask', 'the input root');
    else if (params.mask) v.add('mask', 'is only allowed with MODE_INPAINT');
  }

  if (params.loras.length > limits.maxLoras) v.add('loras', `at most ${limits.maxLoras} are allowed`);
  worker.loras = params.loras.map((lora, i) => {
    const path = v.confined(lora.path, roots.modelRoots, `loras[${i}].path`, 'a model root');
    if (path && !path.toLowerCase().endsWith('.safetensors'))
      v.add(`loras[${i}].path`, 'must be a .safetensors file');
    if (lora.weight !== undefined && !inRange(lora.weight, -10, 10))
      v.add(`loras[${i}].weight`, 'must be between -10 and 10');
    return { path, weight: lora.weight ?? 1 };
  });
  if (params.controlnets.length > limits.maxControlnets)
    v.add('controlnets', `at most ${limits.maxControlnets} are allowed`);
  worker.controlnets = params.controlnets.map((cn, i) => {
    const scale = cn.conditioningScale;
    if (scale !== undefined && !inRange(scale, 0, 2))
      v.add(`controlnets[${i}].conditioning_scale`, 'must be between 0 and 2');
    return {
      path: v.confined(cn.path, roots.modelRoots, `controlnets[${i}].path`, 'a model root'),
      image: v.confined(cn.image, [roots.inputRoot], `controlnets[${i}].image`, 'the input root'),
      conditioningScale: scale ?? 1,
    };
  });

  v.throwIfAny();
  if (mode === 'inpaint' && capabilities && !capabilities.inpaintModel && !params.allowInpaintFallback) {
    throw new DopsError(
      'FAILED_PRECONDITION',
      `${PARAMS}.mode: model '${params.modelId}' is not an inpainting model; set allow_inpaint_fallback to inpaint with it anyway`,
      {
        violations: [
          {
            field: `${PARAMS}.mode`,
            description: 'the model is not an inpainting model and allow_inpaint_fallback is false',
          },
        ],
      },
    );
  }
  return worker as WorkerGenerateParams;
}

/**
 * A worker error's field (camelCase, python request.py) as the proto path of the request
 * (`initImage` → `params.init_image`, `loras[1].weight` → `params.loras[1].weight`).
 */
export function protoFieldOf(workerField: string): string {
  if (workerField === 'model') return `${PARAMS}.model_id`;
  if (workerField === 'previewIntervalS') return 'preview_interval_seconds';
  return `${PARAMS}.${workerField.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}`;
}

/** The worker's DopsError with its field violations renamed to proto paths; other errors unchanged. */
export function withProtoFields(err: unknown): unknown {
  if (!(err instanceof DopsError) || err.violations.length === 0) return err;
  const violations = err.violations.map((violation) => ({
    ...violation,
    field: protoFieldOf(violation.field),
  }));
  const [first] = err.violations;
  const message =
    first && err.message.startsWith(`${first.field}:`)
      ? `${protoFieldOf(first.field)}${err.message.slice(first.field.length)}`
      : err.message;
  return new DopsError(err.code, message, {
    retryable: err.retryable,
    violations,
    metadata: err.metadata,
    retryAfterMs: err.retryAfterMs,
    cause: err,
  });
}

function previewInterval(seconds: number, v: Violations): number {
  if (seconds === 0) return NO_PREVIEWS_S;
  if (!inRange(seconds, MIN_PREVIEW_INTERVAL_S, MAX_PREVIEW_INTERVAL_S)) {
    v.addTopLevel(
      'preview_interval_seconds',
      `must be 0 (no previews) or between ${MIN_PREVIEW_INTERVAL_S} and ${MAX_PREVIEW_INTERVAL_S}`,
    );
  }
  return seconds;
}

function inRange(value: number, min: number, max: number): boolean {
  return Number.isFinite(value) && value >= min && value <= max;
}
