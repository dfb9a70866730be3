import { inferenceV1 } from '@dops/proto';
import { GENERATION_LIMITS, enumValue } from '@dops/validation';

interface Range {
  min: number;
  max: number;
}

/** `inference.capabilities`' result, as the worker sends it (python inference/pipelines.py). */
export interface WorkerCapabilities {
  base: string;
  modes: string[];
  inpaintModel: boolean;
  pipelines: string[];
  schedulers: string[];
  size: Range & { multiple: number; native: number };
  steps: Range;
  cfgScale: Range;
  batchCount: Range;
  /** 0 = no token limit (prompts are encoded in chunks). */
  maxPromptTokens: number;
  maxPromptChars?: number;
  maxLoras: number;
  maxControlnets: number;
}

/** The wire form of one loaded model's capabilities. */
export function toProtoCapabilities(
  modelId: string,
  deviceId: string,
  c: WorkerCapabilities,
): inferenceV1.ModelCapabilities {
  return {
    modelId,
    deviceId,
    base: c.base,
    modes: c.modes
      .map((m) => enumValue(inferenceV1.Mode, m))
      .filter((m): m is inferenceV1.Mode => m !== undefined),
    inpaintModel: c.inpaintModel,
    pipelines: c.pipelines,
    schedulers: c.schedulers,
    size: { ...c.size },
    steps: { ...c.steps },
    cfgScale: { ...c.cfgScale },
    batchCount: { ...c.batchCount },
    maxPromptTokens: c.maxPromptTokens,
    maxLoras: c.maxLoras,
    maxControlnets: c.maxControlnets,
    maxPromptChars: Math.min(
      c.maxPromptChars ?? GENERATION_LIMITS.maxPromptChars,
      GENERATION_LIMITS.maxPromptChars,
    ),
  };
}
