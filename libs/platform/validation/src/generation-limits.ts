/**
 * The limits of one generation: the single table SubmitJob (processing), Generate (inference)
 * and the worker's own checks agree on. A model's capabilities may narrow them (its size range,
 * its schedulers); nothing widens them.
 */
export interface GenerationLimits {
  size: { min: number; max: number; multiple: number };
  steps: { max: number };
  cfgScale: { max: number };
  batchCount: { max: number };
  maxLoras: number;
  maxControlnets: number;
  maxPromptChars: number;
  schedulers: readonly string[];
}

/** Scheduler names as A1111/ComfyUI users know them (python inference/request.py SCHEDULER_NAMES). */
export const SCHEDULER_NAMES = [
  'Euler',
  'Euler a',
  'DPM++ 2M',
  'DPM++ 2M Karras',
  'DDIM',
  'UniPC',
  'LCM',
] as const;
export const DEFAULT_SCHEDULER = 'Euler a';

export const GENERATION_LIMITS: GenerationLimits = {
  size: { min: 64, max: 2048, multiple: 8 },
  steps: { max: 150 },
  cfgScale: { max: 30 },
  batchCount: { max: 8 },
  maxLoras: 8,
  maxControlnets: 4,
  maxPromptChars: 20_000,
  schedulers: SCHEDULER_NAMES,
};

/** Seeds travel as uint64 but must stay exact in JavaScript numbers and JSON. */
export const MAX_SEED = Number.MAX_SAFE_INTEGER;
export const MAX_MODEL_ID_CHARS = 200;
export const LORA_WEIGHT = { min: -10, max: 10 } as const;
export const CONTROLNET_SCALE = { min: 0, max: 2 } as const;
export const CLIP_SKIP = { min: 1, max: 12 } as const;
/** Default steps when unset (the worker's default too). */
export const DEFAULT_STEPS = 20;
