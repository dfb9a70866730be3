import type { FieldViolation } from '@dops/errors';

const snake = (name: string) => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/**
 * A stage's field violations as paths of the SubmitJob request that caused them: the generate
 * stage's `params.width` is `spec.params.width`; a postprocessing stage's `params.modelPath` is
 * `spec.upscale.model_path` (`spec.face_restore…`, `spec.convert…`); the safety stage's are
 * `spec.safety`. A field of no request part (`params.images`: the previous stage's output) names
 * the stage's part of the spec.
 */
export function toRequestFields(stage: string, violations: FieldViolation[]): FieldViolation[] {
  return violations.map((v) => ({ ...v, field: requestField(stage, v.field) }));
}

function requestField(stage: string, field: string): string {
  const inner = field.startsWith('params.') ? field.slice('params.'.length) : field;
  if (stage === 'generate') return `spec.params.${inner}`;
  if (stage === 'safety') return 'spec.safety';
  if (inner === 'images' || inner === 'image') return `spec.${stage}`;
  return `spec.${stage}.${snake(inner)}`;
}
