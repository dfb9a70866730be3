import { DopsError } from '@dops/errors';
import { commonV1, inferenceV1, postprocessingV1, type processingV1 } from '@dops/proto';
import { Violations, checkGeneration, enumName, enumValue } from '@dops/validation';
import { checkInputImage, storeInputImage, type CheckedImage } from './input-images';
import type { StagePlan } from './job-record';

export const TEMPLATES = ['txt2img', 'img2img', 'inpaint'] as const;
export type TemplateName = (typeof TEMPLATES)[number];
export type SafetyName = 'off' | 'flag' | 'blur' | 'block';

export interface WorkflowLimits {
  maxImageBytes: number;
  /** Where input images are written and named files are read; the inference nodes' input root. */
  inputRoot: string;
  defaultSafety: SafetyName;
}

/** A spec that passed every static check, with its input images probed. */
export interface CheckedSpec {
  spec: processingV1.JobSpec;
  template: TemplateName;
  /** The generation with mode set (image paths are filled in by planStages). */
  params: inferenceV1.GenerationParams;
  initImage?: CheckedImage;
  mask?: CheckedImage;
  controlnetImages: CheckedImage[];
  safety: SafetyName;
}

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
 * The static checks of a job, before anything is queued or written: the generation through the
 * shared check (the limits Generate uses), the stage options, then the input images (inline or
 * named, probed from their headers). Throws INVALID_ARGUMENT listing every bad field as its path
 * in the SubmitJob request (`spec.params.width`, `spec.upscale.model_path`, `spec.mask.data`).
 */
export function checkSpec(
  spec: processingV1.JobSpec,
  template: TemplateName,
  limits: WorkflowLimits,
): CheckedSpec {
  if (!spec.params) throw DopsError.invalidArgument('spec.params', 'is required');
  const params: inferenceV1.GenerationParams = {
    ...spec.params,
    mode: enumValue(inferenceV1.Mode, template)!,
  };
  const v = new Violations('spec.params');
  if (params.initImage || params.mask)
    v.add(params.initImage ? 'init_image' : 'mask', 'send images in spec.init_image / spec.mask');
  checkGeneration(params, v, undefined, { initImage: !!spec.initImage, mask: !!spec.mask });
  checkControlnetImages(spec, v);
  const top = new Violations('spec');
  checkStages(spec, top);
  v.throwIfAny();
  top.throwIfAny();
  const image = (i: processingV1.InputImage | undefined, field: string) =>
    i ? checkInputImage(i, field, limits) : undefined;
  const initImage = image(spec.initImage, 'spec.init_image');
  const mask = image(spec.mask, 'spec.mask');
  if (initImage && mask && (mask.width !== initImage.width || mask.height !== initImage.height))
    throw DopsError.invalidArgument(
      'spec.mask',
      `is ${mask.width}×${mask.height}; it must be the size of spec.init_image (${initImage.width}×${initImage.height})`,
    );
  const controlnetImages = spec.controlnetImages.map((i, n) =>
    checkInputImage(i, `spec.controlnet_images[${n}]`, limits),
  );
  const safety = enumName(commonV1.SafetyPolicy, spec.safety) as SafetyName | undefined;
  return {
    spec,
    template,
    params,
    initImage,
    mask,
    controlnetImages,
    safety: safety ?? limits.defaultSafety,
  };
}

function checkControlnetImages(spec: processingV1.JobSpec, v: Violations): void {
  const inline = spec.controlnetImages.length;
  if (inline === 0) return;
  if (inline !== spec.params!.controlnets.length)
    v.addTopLevel(
      'spec.controlnet_images',
      `has ${inline} images for ${spec.params!.controlnets.length} ControlNets; send one per ControlNet or none`,
    );
  spec.params!.controlnets.forEach((cn, i) => {
    if (cn.image) v.add(`controlnets[${i}].image`, 'must be empty when spec.controlnet_images is sent');
  });
}

function checkStages(spec: processingV1.JobSpec, v: Violations): void {
  if (spec.safety === commonV1.SafetyPolicy.UNRECOGNIZED) v.add('safety', 'is not a SafetyPolicy');
  if (spec.upscale) {
    if (!spec.upscale.modelPath) v.add('upscale.model_path', 'is required');
    v.intIn(spec.upscale.scale, 1, 8, 'upscale.scale');
  }
  if (spec.faceRestore) {
    if (!spec.faceRestore.modelPath) v.add('face_restore.model_path', 'is required');
    v.numberIn(spec.faceRestore.strength, 0, 1, 'face_restore.strength');
    const size = v.intIn(spec.faceRestore.faceSize, 64, 1024, 'face_restore.face_size');
    if (size !== undefined && size % 32 !== 0) v.add('face_restore.face_size', 'must be a multiple of 32');
  }
  if (spec.convert) {
    const format = enumName(postprocessingV1.ImageFormat, spec.convert.format);
    if (!format) v.add('convert.format', 'must be IMAGE_FORMAT_PNG, IMAGE_FORMAT_JPEG or IMAGE_FORMAT_WEBP');
    v.intIn(spec.convert.quality, 1, 100, 'convert.quality');
    if (format === 'png' && spec.convert.quality !== undefined)
      v.add('convert.quality', 'is only allowed for JPEG and WebP (PNG is lossless)');
  }
}

/**
 * The stages of a checked spec — generate [→ upscale] [→ face_restore] [→ safety] [→ convert] —
 * with inline input images stored under the input root.
 */
export async function planStages(
  jobId: string,
  checked: CheckedSpec,
  limits: WorkflowLimits,
): Promise<StagePlan[]> {
  const { spec } = checked;
  const generate = { ...checked.params };
  if (checked.initImage)
    generate.initImage = await storeInputImage(checked.initImage, limits.inputRoot, jobId, 'init');
  if (checked.mask) generate.mask = await storeInputImage(checked.mask, limits.inputRoot, jobId, 'mask');
  if (checked.controlnetImages.length) {
    const images = await Promise.all(
      checked.controlnetImages.map((image, i) =>
        storeInputImage(image, limits.inputRoot, jobId, `controlnet-${i}`),
      ),
    );
    generate.controlnets = generate.controlnets.map((cn, i) => ({ ...cn, image: images[i]! }));
  }
  const plan: StagePlan[] = [
    { stage: 'generate', params: inferenceV1.GenerationParams.toJSON(generate) as Record<string, unknown> },
  ];
  if (spec.upscale)
    plan.push({ stage: 'upscale', params: { modelPath: spec.upscale.modelPath, scale: spec.upscale.scale } });
  if (spec.faceRestore)
    plan.push({
      stage: 'face_restore',
      params: {
        modelPath: spec.faceRestore.modelPath,
        strength: spec.faceRestore.strength,
        faceSize: spec.faceRestore.faceSize,
      },
    });
  if (checked.safety !== 'off') plan.push({ stage: 'safety', params: { policy: checked.safety } });
  if (spec.convert)
    plan.push({
      stage: 'convert',
      params: {
        format: enumName(postprocessingV1.ImageFormat, spec.convert.format),
        quality: spec.convert.quality,
      },
    });
  return plan;
}
