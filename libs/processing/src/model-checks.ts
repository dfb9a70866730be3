import { DopsError, type FieldViolation } from '@dops/errors';
import { modelV1, type inferenceV1, type processingV1 } from '@dops/proto';
import { enumKey } from '@dops/validation';
import type { ModelCatalog } from './model-catalog';
import type { TemplateName } from './workflow';

type Code = 'INVALID_ARGUMENT' | 'NOT_FOUND' | 'FAILED_PRECONDITION';

/** Problems found, each with the code it answers with; the first code decides the answer. */
class Findings {
  readonly list: { code: Code; violation: FieldViolation }[] = [];
  add(code: Code, field: string, description: string): void {
    this.list.push({ code, violation: { field, description } });
  }
  throwIfAny(): void {
    const order: Code[] = ['INVALID_ARGUMENT', 'NOT_FOUND', 'FAILED_PRECONDITION'];
    const code = order.find((c) => this.list.some((f) => f.code === c));
    if (!code) return;
    const mine = this.list.filter((f) => f.code === code).map((f) => f.violation);
    const [first] = mine;
    throw new DopsError(code, `${first!.field}: ${first!.description}`, { violations: mine });
  }
}

/** One file a job names, the field that names it and the model type it must be. */
interface FileRef {
  field: string;
  path: string;
  type: modelV1.ModelType;
  scale?: number;
}

const TYPE_NAMES = (type: modelV1.ModelType) => (enumKey(modelV1.ModelType, type) ?? 'UNKNOWN').toLowerCase();

/**
 * The checks that need the registry, as soon as the job names its models: the checkpoint exists,
 * is a checkpoint and is usable (status OK); inpaint needs an inpainting model or
 * allow_inpaint_fallback; every LoRA, ControlNet, upscaler and face restorer the job names is a
 * registry entry of that type, usable, of the checkpoint's base (LoRA, ControlNet), and the
 * upscale factor matches the upscaler's. Throws INVALID_ARGUMENT (a path outside the model
 * roots, a file of the wrong type, a wrong factor), NOT_FOUND (no such model) or
 * FAILED_PRECONDITION (unusable, wrong base, not an inpainting model) naming each field.
 */
export async function checkModels(
  catalog: ModelCatalog,
  spec: processingV1.JobSpec,
  params: inferenceV1.GenerationParams,
  template: TemplateName,
): Promise<void> {
  const f = new Findings();
  const modelField = 'spec.params.model_id';
  const checkpoint = await lookup(catalog, { id: params.modelId }, modelField, f);
  if (checkpoint) {
    if (checkpoint.type !== modelV1.ModelType.CHECKPOINT)
      f.add('INVALID_ARGUMENT', modelField, `is a ${TYPE_NAMES(checkpoint.type)}, not a checkpoint`);
    else requireUsable(checkpoint, modelField, f);
    if (template === 'inpaint' && checkpoint.variant !== 'inpaint' && !params.allowInpaintFallback)
      f.add(
        'FAILED_PRECONDITION',
        'spec.template',
        `model '${params.modelId}' is not an inpainting model; set spec.params.allow_inpaint_fallback to inpaint with it anyway`,
      );
  } else if (!f.list.length) {
    f.add('NOT_FOUND', modelField, `model '${params.modelId}' is not in the model registry`);
  }
  const files: FileRef[] = [
    ...params.loras.map((l, i) => ({
      field: `spec.params.loras[${i}].path`,
      path: l.path,
      type: modelV1.ModelType.LORA,
    })),
    ...params.controlnets.map((c, i) => ({
      field: `spec.params.controlnets[${i}].path`,
      path: c.path,
      type: modelV1.ModelType.CONTROLNET,
    })),
  ];
  if (spec.upscale)
    files.push({
      field: 'spec.upscale.model_path',
      path: spec.upscale.modelPath,
      type: modelV1.ModelType.UPSCALER,
      scale: spec.upscale.scale,
    });
  if (spec.faceRestore)
    files.push({
      field: 'spec.face_restore.model_path',
      path: spec.faceRestore.modelPath,
      type: modelV1.ModelType.FACE_RESTORER,
    });
  for (const ref of files) {
    const entry = await lookup(catalog, { path: ref.path }, ref.field, f);
    if (!entry) {
      if (!f.list.some((x) => x.violation.field === ref.field))
        f.add('NOT_FOUND', ref.field, `no ${TYPE_NAMES(ref.type)} '${ref.path}' in the model registry`);
      continue;
    }
    if (entry.type !== ref.type) {
      f.add('INVALID_ARGUMENT', ref.field, `is a ${TYPE_NAMES(entry.type)}, not a ${TYPE_NAMES(ref.type)}`);
      continue;
    }
    requireUsable(entry, ref.field, f);
    const base = checkpoint?.base ?? modelV1.ModelBase.UNSPECIFIED;
    if (
      (ref.type === modelV1.ModelType.LORA || ref.type === modelV1.ModelType.CONTROLNET) &&
      base !== modelV1.ModelBase.UNSPECIFIED &&
      entry.base !== modelV1.ModelBase.UNSPECIFIED &&
      entry.base !== base
    )
      f.add(
        'FAILED_PRECONDITION',
        ref.field,
        `is for ${enumKey(modelV1.ModelBase, entry.base)}, the model is ${enumKey(modelV1.ModelBase, base)}`,
      );
    if (ref.scale !== undefined && entry.scale && entry.scale !== ref.scale)
      f.add(
        'INVALID_ARGUMENT',
        'spec.upscale.scale',
        `is ${ref.scale} but the upscaler's factor is ${entry.scale}`,
      );
  }
  f.throwIfAny();
}

async function lookup(
  catalog: ModelCatalog,
  ref: { id: string } | { path: string },
  field: string,
  f: Findings,
): Promise<modelV1.Model | undefined> {
  try {
    return await catalog.get(ref);
  } catch (err) {
    if (err instanceof DopsError && err.code === 'INVALID_ARGUMENT') {
      f.add('INVALID_ARGUMENT', field, err.violations[0]?.description ?? err.message);
      return undefined;
    }
    throw err;
  }
}

function requireUsable(entry: modelV1.Model, field: string, f: Findings): void {
  if (entry.status === modelV1.ModelStatus.OK || entry.status === modelV1.ModelStatus.HASHING) return;
  f.add(
    'FAILED_PRECONDITION',
    field,
    `'${entry.relativePath || entry.path}' cannot be loaded (${enumKey(modelV1.ModelStatus, entry.status) ?? 'unknown'}): ${entry.reason}`,
  );
}
