export { checkConfined, confinePath, isInside } from './confine-path';
export type { ConfinedPath, Confinement } from './confine-path';
export { Violations } from './violations';
export { enumKey, enumKeys, enumName, enumValue } from './enum-names';
export {
  CLIP_SKIP,
  CONTROLNET_SCALE,
  DEFAULT_SCHEDULER,
  DEFAULT_STEPS,
  GENERATION_LIMITS,
  LORA_WEIGHT,
  MAX_MODEL_ID_CHARS,
  MAX_SEED,
  SCHEDULER_NAMES,
} from './generation-limits';
export type { GenerationLimits } from './generation-limits';
export { checkGeneration } from './generation-check';
export type { GenerationMode } from './generation-check';
