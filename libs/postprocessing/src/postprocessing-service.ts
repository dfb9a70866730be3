import { defineService, type CallContext, type ServiceRegistration } from '@dops/grpc-server';
import { DopsError } from '@dops/errors';
import { commonV1, postprocessingV1 } from '@dops/proto';
import { enumValue } from '@dops/validation';
import { toProtoPolicy } from './postprocess-request';
import type { PostprocessOutcome, Postprocessor, RunOptions, WorkerArtifact } from './postprocessor';

/** The proto action of a worker's action name (`flagged` → SAFETY_ACTION_FLAGGED). */
export function toProtoAction(action: string | undefined): commonV1.SafetyAction {
  return enumValue(commonV1.SafetyAction, action ?? '') ?? commonV1.SafetyAction.UNSPECIFIED;
}

/** The wire form of a worker artifact. */
export function toProtoArtifact(
  a: WorkerArtifact,
  safety: commonV1.SafetyAction = commonV1.SafetyAction.UNSPECIFIED,
): commonV1.Artifact {
  return { path: a.path, sha256: a.sha256, width: a.width, height: a.height, format: a.format, safety };
}

function imageOf(r: PostprocessOutcome): commonV1.Artifact {
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
          action: toProtoAction(r.action),
          image: r.image ? toProtoArtifact(r.image, toProtoAction(r.action)) : undefined,
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
