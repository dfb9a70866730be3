import { DopsError } from '@dops/errors';
import { inferenceV1, workerV1 } from '@dops/proto';
import { GENERATION_LIMITS, Violations, checkGeneration, type GenerationLimits } from '@dops/validation';
import type { WorkerCapabilities } from './worker-capabilities';

// Latent previews "at most a few times a second".
const MIN_PREVIEW_INTERVAL_S = 0.25;
const MAX_PREVIEW_INTERVAL_S = 3600;
// Sent when the caller wants no previews: the worker then writes none within the hour.
const NO_PREVIEWS_S = MAX_PREVIEW_INTERVAL_S;

/** Where request paths may point. */
export interface RequestRoots {
  /** Images read by the worker (init image, mask, ControlNet hints). */
  inputRoot: string;
  /** LoRA and ControlNet files; relative paths resolve against the first. */
  modelRoots: readonly string[];
}

/** `inference.generate` params: the proto3 JSON of dops.worker.v1.GenerateParams. */
export type WorkerGenerateParams = Record<string, unknown> & { model: string };

const PARAMS = 'params';

/** The shared generation limits narrowed to what the model's capabilities say. */
export function limitsOf(capabilities: WorkerCapabilities | undefined): GenerationLimits {
  if (!capabilities) return GENERATION_LIMITS;
  return {
    size: capabilities.size,
    steps: { max: Math.min(capabilities.steps.max, GENERATION_LIMITS.steps.max) },
    cfgScale: { max: Math.min(capabilities.cfgScale.max, GENERATION_LIMITS.cfgScale.max) },
    batchCount: { max: Math.min(capabilities.batchCount.max, GENERATION_LIMITS.batchCount.max) },
    maxLoras: Math.min(capabilities.maxLoras, GENERATION_LIMITS.maxLoras),
    maxControlnets: Math.min(capabilities.maxControlnets, GENERATION_LIMITS.maxControlnets),
    maxPromptChars: GENERATION_LIMITS.maxPromptChars,
    schedulers: capabilities.schedulers,
  };
}

/**
 * Checks every field of `params` with the shared generation check (the model's capabilities
 * narrowing the limits once known), confines every path to its roots, and returns the worker's
 * message (dops.worker.v1.GenerateParams as proto3 JSON). Throws INVALID_ARGUMENT listing every
 * bad field as its proto path (`params.width`, `params.loras[1].weight`), then
 * FAILED_PRECONDITION naming `params.mode` for inpaint on a model without an inpainting UNet
 * (and no fallback). `outputDir` is relative to the worker's artifact root.
 */
export function toWorkerParams(
  params: inferenceV1.GenerationParams | undefined,
  capabilities: WorkerCapabilities | undefined,
  roots: RequestRoots,
  extra: { outputDir: string; previewIntervalSeconds: number },
): WorkerGenerateParams {
  if (!params) throw DopsError.invalidArgument(PARAMS, 'is required');
  const v = new Violations(PARAMS);
  const mode = checkGeneration(params, v, limitsOf(capabilities));
  const previewIntervalS = previewInterval(extra.previewIntervalSeconds, v);
  const input = [roots.inputRoot];
  const confinedImage = (raw: string, field: string) =>
    raw ? v.confined(raw, input, field, 'the input root') : '';
  const loras = params.loras.map((lora, i) => {
    const path = lora.path ? v.confined(lora.path, roots.modelRoots, `loras[${i}].path`, 'a model root') : '';
    if (path && !path.toLowerCase().endsWith('.safetensors'))
      v.add(`loras[${i}].path`, 'must be a .safetensors file');
    return { path, weight: lora.weight };
  });
  const controlnets = params.controlnets.map((cn, i) => ({
    path: cn.path ? v.confined(cn.path, roots.modelRoots, `controlnets[${i}].path`, 'a model root') : '',
    image: cn.image
      ? confinedImage(cn.image, `controlnets[${i}].image`)
      : (v.add(`controlnets[${i}].image`, 'is required'), ''),
    conditioningScale: cn.conditioningScale,
  }));
  const initImage = confinedImage(params.initImage, 'init_image');
  const mask = confinedImage(params.mask, 'mask');
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
  // Every other field has the same name in both messages: a new generation field needs no code here.
  const { modelId, mode: _mode, ...same } = params;
  const message = workerV1.GenerateParams.fromPartial({
    ...same,
    model: modelId,
    mode: mode ?? '',
    initImage,
    mask,
    loras,
    controlnets,
    outputDir: extra.outputDir,
    previewIntervalS,
  });
  return workerV1.GenerateParams.toJSON(message) as WorkerGenerateParams;
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
