import { defineService, type CallContext, type ServiceRegistration } from '@dops/grpc-server';
import { DopsError } from '@dops/errors';
import { postprocessingV1 } from '@dops/proto';
import { toProtoPolicy } from './postprocess-request';
import type { PostprocessOutcome, Postprocessor, RunOptions, WorkerArtifact } from './postprocessor';

const ACTIONS: Record<string, postprocessingV1.SafetyAction> = {
  passed: postprocessingV1.SafetyAction.PASSED,
  flagged: postprocessingV1.SafetyAction.FLAGGED,
  blurred: postprocessingV1.SafetyAction.BLURRED,
  blocked: postprocessingV1.SafetyAction.BLOCKED,
};

/** The wire form of a worker artifact. */
export function toProtoArtifact(a: WorkerArtifact): postprocessingV1.Artifact {
  return { path: a.path, sha256: a.sha256, width: a.width, height: a.height, format: a.format };
}

function imageOf(r: PostprocessOutcome): postprocessingV1.Artifact {
  if (!r.image) throw new DopsError('INTERNAL', `the worker's ${r.operation} result has no image`);
  return toProtoArtifact(r.image);
}

function runOptions(ctx: CallContext, deviceId: string): RunOptions {
  return { deviceId, signal: ctx.signal, deadline: ctx.deadline, traceparent: ctx.traceparent };
}

/** `dops.postprocessing.v1.PostprocessingService` over a Postprocessor. */
export function postprocessingService(
  postprocessor: Postprocessor,
): ServiceRegistration<typeof postprocessingV1.PostprocessingServiceService> {
  return defineService(
    postprocessingV1.PostprocessingServiceService,
    {
      upscale: async (req, ctx) => {
        const r = await postprocessor.upscale(req, runOptions(ctx, req.deviceId));
        return {
          image: imageOf(r),
          scale: r.scale ?? 0,
          architecture: r.architecture ?? '',
          tiles: r.tiles ?? 0,
          deviceId: r.deviceId,
        };
      },
      restoreFaces: async (req, ctx) => {
        const r = await postprocessor.restoreFaces(req, runOptions(ctx, req.deviceId));
        return { image: imageOf(r), architecture: r.architecture ?? '', deviceId: r.deviceId };
      },
      checkSafety: async (req, ctx) => {
        const r = await postprocessor.checkSafety(req, runOptions(ctx, req.deviceId));
        return {
          nsfw: r.nsfw ?? false,
          policy: toProtoPolicy(r.policy ?? ''),
          action: ACTIONS[r.action ?? ''] ?? postprocessingV1.SafetyAction.UNSPECIFIED,
          image: r.image ? toProtoArtifact(r.image) : undefined,
          blocked: r.blocked ?? false,
          deviceId: r.deviceId,
        };
      },
      convert: async (req, ctx) => {
        const r = await postprocessor.convert(req, runOptions(ctx, req.deviceId));
        return { image: imageOf(r), quality: r.image?.quality ?? 0, deviceId: r.deviceId };
      },
    },
    // Direct calls name files on the node; clients reach these stages through processing workflows.
    { default: ['operator', 'internal'] },
  );
}
