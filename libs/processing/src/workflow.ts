import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DopsError } from '@dops/errors';
import { inferenceV1, processingV1 } from '@dops/proto';
import { probeImage } from './image-probe';
import type { StagePlan } from './job-record';

export const TEMPLATES = ['txt2img', 'img2img', 'inpaint'] as const;
export type TemplateName = (typeof TEMPLATES)[number];

export interface WorkflowLimits {
  maxImageBytes: number;
  /** Where input images are written; the inference nodes read them from the same path. */
  inputRoot: string;
  defaultSafety: 'off' | 'flag' | 'blur' | 'block';
}

const SAFETY: Partial<Record<processingV1.SafetyPolicy, WorkflowLimits['defaultSafety']>> = {
  [processingV1.SafetyPolicy.OFF]: 'off',
  [processingV1.SafetyPolicy.FLAG]: 'flag',
  [processingV1.SafetyPolicy.BLUR]: 'blur',
  [processingV1.SafetyPolicy.BLOCK]: 'block',
};

const MODES: Record<TemplateName, inferenceV1.Mode> = {
  txt2img: inferenceV1.Mode.TXT2IMG,
  img2img: inferenceV1.Mode.IMG2IMG,
  inpaint: inferenceV1.Mode.INPAINT,
};

/** Throws NOT_FOUND naming `spec.template` for an unknown template. */
export function templateOf(spec: processingV1.JobSpec | undefined): TemplateName {
  const name = spec?.template ?? '';
  if (!(TEMPLATES as readonly string[]).includes(name))
    throw new DopsError(
      'NOT_FOUND',
      `spec.template: template '${name}' not found; use one of ${TEMPLATES.join(', ')}`,
      {
        violations: [{ field: 'spec.template', description: `unknown template '${name}'` }],
      },
    );
  return name as TemplateName;
}

/**
 * Checks the spec's generation fields and images (before anything is queued) and returns its
 * params with mode set; throws INVALID_ARGUMENT naming the field (`spec.params.width`,
 * `spec.mask`).
 */
export function checkSpec(
  spec: processingV1.JobSpec,
  template: TemplateName,
  limits: WorkflowLimits,
): inferenceV1.GenerationParams {
  const p = spec.params;
  if (!p) throw DopsError.invalidArgument('spec.params', 'is required');
  const v: { field: string; description: string }[] = [];
  const add = (field: string, description: string) => v.push({ field: `spec.params.${field}`, description });
  if (!p.modelId) add('model_id', 'is required (or set in the session defaults)');
  for (const f of ['width', 'height'] as const) {
    const value = p[f];
    if (value !== undefined && (value < 64 || value > 4096 || value % 8 !== 0))
      add(f, 'must be a multiple of 8 between 64 and 4096');
  }
  if (p.steps !== undefined && (p.steps < 1 || p.steps > 150)) add('steps', 'must be between 1 and 150');
  if (p.cfgScale !== undefined && !(p.cfgScale >= 0 && p.cfgScale <= 30))
    add('cfg_scale', 'must be between 0 and 30');
  if (p.strength !== undefined && !(p.strength >= 0 && p.strength <= 1))
    add('strength', 'must be between 0 and 1');
  if (p.batchCount > 8) add('batch_count', 'must be between 1 and 8');
  if (p.initImage || p.mask)
    add(p.initImage ? 'init_image' : 'mask', 'send images in spec.init_image / spec.mask');
  if (template === 'txt2img' && spec.initImage)
    v.push({ field: 'spec.init_image', description: 'is only allowed with img2img and inpaint' });
  if (template !== 'txt2img' && !spec.initImage?.data.length)
    v.push({ field: 'spec.init_image', description: `is required for ${template}` });
  if (template !== 'inpaint' && spec.mask)
    v.push({ field: 'spec.mask', description: 'is only allowed with inpaint' });
  if (template === 'inpaint' && !spec.mask?.data.length)
    v.push({ field: 'spec.mask', description: 'is required for inpaint' });
  if (spec.upscale && template !== 'txt2img')
    v.push({ field: 'spec.upscale', description: 'is only allowed with txt2img' });
  if (spec.upscale && !spec.upscale.modelPath)
    v.push({ field: 'spec.upscale.model_path', description: 'is required' });
  const error = DopsError.fromViolations(v);
  if (error) throw error;
  if (spec.initImage?.data.length) {
    const init = probeImage(spec.initImage.data, 'spec.init_image', limits.maxImageBytes);
    if (spec.mask?.data.length) {
      const mask = probeImage(spec.mask.data, 'spec.mask', limits.maxImageBytes);
      if (mask.width !== init.width || mask.height !== init.height)
        throw DopsError.invalidArgument(
          'spec.mask',
          `is ${mask.width}×${mask.height}; it must be the size of spec.init_image (${init.width}×${init.height})`,
        );
    }
  }
  return { ...p, mode: MODES[template] };
}

/** The stages of a checked spec: generate [→ upscale] [→ safety]; writes its input images under the input root. */
export async function planStages(
  jobId: string,
  spec: processingV1.JobSpec,
  params: inferenceV1.GenerationParams,
  limits: WorkflowLimits,
): Promise<StagePlan[]> {
  const generate = { ...params };
  if (spec.initImage?.data.length) {
    const dir = join(limits.inputRoot, 'jobs', jobId);
    await mkdir(dir, { recursive: true });
    generate.initImage = join(dir, 'init');
    await writeFile(generate.initImage, spec.initImage.data);
    if (spec.mask?.data.length) {
      generate.mask = join(dir, 'mask');
      await writeFile(generate.mask, spec.mask.data);
    }
  }
  const plan: StagePlan[] = [
    { stage: 'generate', params: inferenceV1.GenerationParams.toJSON(generate) as Record<string, unknown> },
  ];
  if (spec.upscale)
    plan.push({ stage: 'upscale', params: { modelPath: spec.upscale.modelPath, scale: spec.upscale.scale } });
  const safety = SAFETY[spec.safety] ?? limits.defaultSafety;
  if (safety !== 'off') plan.push({ stage: 'safety', params: { policy: safety } });
  return plan;
}
