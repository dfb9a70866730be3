import { DopsError } from '@dops/errors';
import type { StageContext, StageProcessor, StageResult } from '@dops/queue';
import type { Artifact } from '@dops/queue';
import { commonV1 } from '@dops/proto';
import { toProtoAction, toProtoArtifact } from '../postprocessing-service';
import { toProtoFormat, toProtoPolicy } from '../postprocess-request';
import type { PostprocessOutcome, Postprocessor, RunOptions } from '../postprocessor';

/** Stage params of the `postprocessing` queue, camelCase (docs/queue-contract.md). */
export interface PostprocessStageParams {
  /** upscale, face_restore. */
  modelPath?: string;
  /** upscale: the factor the caller expects; the model's own must match. */
  scale?: number;
  tileSize?: number;
  tileOverlap?: number;
  /** face_restore. */
  strength?: number;
  faceSize?: number;
  /** safety: default the service's. */
  policy?: string;
  /** convert. */
  format?: string;
  quality?: number;
  /** A first stage's own input images (no child stage): paths in the input or artifact root. */
  images?: string[];
}

/**
 * The processor of postprocessing stage jobs (upscale, face_restore, safety, convert): runs the
 * stage's operation on every input image — the previous stage's images, else `params.images` —
 * and returns `{images, results}` (`results`: the per-image extras: scale, nsfw, action, ...).
 * A safety stage that blocks an image fails FAILED_PRECONDITION (not retryable), so a blocked
 * image is never delivered; a flagged image is delivered as the worker's copy that records the flag
 * (and `safety` FLAGGED on its artifact), a blurred one replaced by the blurred copy.
 * Throws INVALID_ARGUMENT naming `params.<field>` for bad params, as the gRPC API does.
 */
export function postprocessingStage(postprocessor: Postprocessor): StageProcessor<PostprocessStageParams> {
  return async (ctx) => {
    const params = ctx.data.params ?? {};
    const images = await inputImages(ctx);
    if (images.length === 0) throw DopsError.invalidArgument('params.images', 'the stage has no input image');
    const results: Omit<PostprocessOutcome, 'image'>[] = [];
    const outputs: Artifact[] = [];
    for (const [index, image] of images.entries()) {
      const options: RunOptions = {
        signal: ctx.signal,
        deadline: ctx.deadline,
        traceparent: ctx.data.traceparent,
        onProgress: (p) =>
          ctx.reportProgress({ step: index * p.total + p.step, total: images.length * p.total }),
      };
      const outcome = await runStage(postprocessor, ctx.data.stage, image.path, params, options).catch(
        (err: unknown) => {
          throw prefixed(err);
        },
      );
      if (outcome.blocked) {
        throw new DopsError('FAILED_PRECONDITION', `image ${index} was blocked by the safety check`, {
          retryable: false,
          metadata: { image: image.path, policy: 'block' },
        });
      }
      const { image: artifact, ...extras } = outcome;
      if (!artifact) throw new DopsError('INTERNAL', `the ${ctx.data.stage} stage wrote no image`);
      // The seed stays with the image; a safety verdict too, once a safety stage gave one.
      const safety = ctx.data.stage === 'safety' ? toProtoAction(outcome.action) : image.safety;
      outputs.push({ ...toProtoArtifact(artifact, safety), seed: image.seed });
      results.push(extras);
    }
    return { images: outputs, results } satisfies StageResult;
  };
}

/** The previous stage's images, else the stage's own `params.images` (paths, nothing known about them). */
async function inputImages(
  ctx: StageContext<PostprocessStageParams>,
): Promise<Pick<Artifact, 'path' | 'seed' | 'safety'>[]> {
  const children = await ctx.inputs();
  const fromChildren = children.flatMap((result) => result.images);
  if (fromChildren.length > 0) return fromChildren;
  const own = ctx.data.params?.images;
  return (Array.isArray(own) ? own.filter((path): path is string => typeof path === 'string') : []).map(
    (path) => ({ path, safety: commonV1.SafetyAction.UNSPECIFIED }),
  );
}

async function runStage(
  postprocessor: Postprocessor,
  stage: string,
  image: string,
  p: PostprocessStageParams,
  options: RunOptions,
): Promise<PostprocessOutcome> {
  switch (stage) {
    case 'upscale':
      return postprocessor
        .upscale(
          {
            image,
            modelPath: p.modelPath ?? '',
            tileSize: p.tileSize,
            tileOverlap: p.tileOverlap,
            deviceId: '',
          },
          options,
        )
        .then((outcome) => {
          if (p.scale !== undefined && outcome.scale !== p.scale)
            throw DopsError.invalidArgument(
              'scale',
              `is ${p.scale} but the model upscales ${outcome.scale}x`,
            );
          return outcome;
        });
    case 'face_restore':
      return postprocessor.restoreFaces(
        { image, modelPath: p.modelPath ?? '', strength: p.strength, faceSize: p.faceSize, deviceId: '' },
        options,
      );
    case 'safety': {
      const policy = toProtoPolicy(p.policy ?? '');
      if (p.policy !== undefined && policy === toProtoPolicy(''))
        throw DopsError.invalidArgument('policy', 'must be flag, blur or block');
      return postprocessor.checkSafety({ image, policy, modelPath: p.modelPath ?? '' }, options);
    }
    case 'convert':
      return postprocessor.convert(
        { image, format: toProtoFormat(p.format ?? ''), quality: p.quality, deviceId: '' },
        options,
      );
    default:
      throw DopsError.invalidArgument('stage', `'${stage}' is not a postprocessing stage`);
  }
}

/** Field violations as `params.<field>` (the stage job's field paths); other errors unchanged. */
function prefixed(err: unknown): unknown {
  if (!(err instanceof DopsError) || err.violations.length === 0) return err;
  const violations = err.violations.map((v) => ({
    ...v,
    field:
      v.field === 'image'
        ? 'params.images'
        : `params.${v.field.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase())}`,
  }));
  return new DopsError(err.code, err.message, {
    retryable: err.retryable,
    violations,
    metadata: err.metadata,
    cause: err,
  });
}
