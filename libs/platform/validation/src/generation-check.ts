import { inferenceV1 } from '@dops/proto';
import {
  CLIP_SKIP,
  CONTROLNET_SCALE,
  DEFAULT_SCHEDULER,
  DEFAULT_STEPS,
  GENERATION_LIMITS,
  LORA_WEIGHT,
  MAX_MODEL_ID_CHARS,
  MAX_SEED,
  type GenerationLimits,
} from './generation-limits';
import { enumName } from './enum-names';
import type { Violations } from './violations';

export type GenerationMode = 'txt2img' | 'img2img' | 'inpaint';

/**
 * The static checks of one GenerationParams, the same at every edge (SubmitJob, Generate):
 * every value field against `limits`, the mode's image fields present or absent, list lengths,
 * LoRA weights and ControlNet scales finite and in range. Records each problem in `v` (its prefix
 * names the message: `spec.params`, `params`); paths are checked by the caller (roots or the
 * registry), images too. Returns the mode, undefined when it is not one.
 */
export function checkGeneration(
  p: inferenceV1.GenerationParams,
  v: Violations,
  limits: GenerationLimits = GENERATION_LIMITS,
  images: { initImage: boolean; mask: boolean } = { initImage: !!p.initImage, mask: !!p.mask },
): GenerationMode | undefined {
  if (!p.modelId) v.add('model_id', 'is required');
  else if (p.modelId.length > MAX_MODEL_ID_CHARS)
    v.add('model_id', `must be at most ${MAX_MODEL_ID_CHARS} characters`);
  const mode = (p.mode === inferenceV1.Mode.UNSPECIFIED ? 'txt2img' : enumName(inferenceV1.Mode, p.mode)) as
    | GenerationMode
    | undefined;
  if (!mode) v.add('mode', 'must be MODE_TXT2IMG, MODE_IMG2IMG or MODE_INPAINT');
  for (const [field, text] of [
    ['prompt', p.prompt],
    ['negative_prompt', p.negativePrompt],
  ] as const) {
    if (text.length > limits.maxPromptChars)
      v.add(field, `must be at most ${limits.maxPromptChars} characters`);
    if (text.includes('\0')) v.add(field, 'must not contain NUL characters');
  }
  for (const field of ['width', 'height'] as const) {
    const value = p[field];
    if (value === undefined) continue;
    if (value < limits.size.min || value > limits.size.max)
      v.add(field, `must be between ${limits.size.min} and ${limits.size.max}`);
    else if (value % limits.size.multiple !== 0)
      v.add(field, `must be a multiple of ${limits.size.multiple}`);
  }
  v.intIn(p.steps, 1, limits.steps.max, 'steps');
  v.numberIn(p.cfgScale, 0, limits.cfgScale.max, 'cfg_scale');
  v.intIn(p.seed, 0, MAX_SEED, 'seed');
  if (p.batchCount > limits.batchCount.max)
    v.add('batch_count', `must be between 1 and ${limits.batchCount.max}`);
  const scheduler = p.scheduler || DEFAULT_SCHEDULER;
  if (!limits.schedulers.includes(scheduler))
    v.add('scheduler', `must be one of ${limits.schedulers.join(', ')}`);
  v.intIn(p.clipSkip, CLIP_SKIP.min, CLIP_SKIP.max, 'clip_skip');

  if (mode === 'txt2img') {
    if (images.initImage) v.add('init_image', 'is only allowed with MODE_IMG2IMG or MODE_INPAINT');
    if (images.mask) v.add('mask', 'is only allowed with MODE_INPAINT');
    if (p.strength !== undefined) v.add('strength', 'is only allowed with MODE_IMG2IMG or MODE_INPAINT');
  } else if (mode) {
    if (p.strength !== undefined) {
      if (!(Number.isFinite(p.strength) && p.strength >= 0 && p.strength <= 1))
        v.add('strength', 'must be between 0 and 1');
      // diffusers runs int(steps × strength) steps and fails on zero.
      else if (Math.floor((p.steps ?? DEFAULT_STEPS) * p.strength) < 1)
        v.add('strength', '× steps leaves no denoising step');
    }
    if (!images.initImage) v.add('init_image', `is required for ${mode}`);
    if (mode === 'inpaint' && !images.mask) v.add('mask', 'is required for inpaint');
    if (mode === 'img2img' && images.mask) v.add('mask', 'is only allowed with MODE_INPAINT');
  }

  if (p.loras.length > limits.maxLoras) v.add('loras', `at most ${limits.maxLoras} are allowed`);
  else
    p.loras.forEach((lora, i) => {
      if (!lora.path) v.add(`loras[${i}].path`, 'is required');
      v.numberIn(lora.weight, LORA_WEIGHT.min, LORA_WEIGHT.max, `loras[${i}].weight`);
    });
  if (p.controlnets.length > limits.maxControlnets)
    v.add('controlnets', `at most ${limits.maxControlnets} are allowed`);
  else
    p.controlnets.forEach((cn, i) => {
      if (!cn.path) v.add(`controlnets[${i}].path`, 'is required');
      v.numberIn(
        cn.conditioningScale,
        CONTROLNET_SCALE.min,
        CONTROLNET_SCALE.max,
        `controlnets[${i}].conditioning_scale`,
      );
    });
  return mode;
}
