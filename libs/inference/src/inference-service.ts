import { defineService, type ServiceRegistration } from '@dops/grpc-server';
import { commonV1, inferenceV1 } from '@dops/proto';
import { parseDeviceId } from '@dops/worker-pool';
import type { ProgressParams } from '@dops/worker-supervisor';
import type { GenerateOutcome, Generator } from './generator';
import type { InferenceModels } from './inference-models';
import { toProtoCapabilities } from './worker-capabilities';

/** The wire form of a generation's result. */
export function toProtoResult(r: GenerateOutcome): inferenceV1.GenerationResult {
  return {
    images: r.images.map((image) => ({
      artifact: {
        path: image.path,
        sha256: image.sha256,
        width: image.width,
        height: image.height,
        format: image.format,
        seed: image.seed,
        safety: commonV1.SafetyAction.UNSPECIFIED,
      },
      seed: image.seed,
      index: image.index,
    })),
    seed: r.seed,
    deviceId: r.deviceId,
    oomMitigations: r.oomMitigations,
    timings: { generateSeconds: r.timings?.generateS ?? 0, writeSeconds: r.timings?.writeS ?? 0 },
  };
}

function toProtoProgress(p: ProgressParams): inferenceV1.Progress {
  const preview = p.preview
    ? commonV1.Artifact.fromPartial({
        path: p.preview.path,
        width: p.preview.width,
        height: p.preview.height,
        format: 'png',
      })
    : undefined;
  return { step: p.step, total: p.total, preview };
}

/** `dops.inference.v1.InferenceService` over a Generator and the models it runs. */
export function inferenceService(
  generator: Generator,
  models: InferenceModels,
): ServiceRegistration<typeof inferenceV1.InferenceServiceService> {
  return defineService(
    inferenceV1.InferenceServiceService,
    {
      generate: async (req, ctx) => {
        const result = await generator.generate({
          params: req.params,
          deviceId: req.deviceId,
          signal: ctx.signal,
          deadline: ctx.deadline,
          traceparent: ctx.traceparent,
        });
        return { result: toProtoResult(result) };
      },
      generateStream: async (req, ctx, send) => {
        // Progress arrives synchronously from the supervisor; sends are chained to keep order and backpressure.
        let sending = Promise.resolve();
        let stage = inferenceV1.Stage.UNSPECIFIED;
        let deviceId = '';
        const enqueue = (message: inferenceV1.GenerateStreamResponse) => {
          sending = sending.then(() => send(message)).catch(() => undefined); // a failed send means the call ended; ctx.signal cancels the work
        };
        const enterStage = (next: inferenceV1.Stage) => {
          if (next === stage) return;
          stage = next;
          enqueue({ stage: { stage: next, deviceId } });
        };
        const result = await generator.generate({
          params: req.params,
          deviceId: req.deviceId,
          previewIntervalSeconds: req.previewIntervalSeconds,
          signal: ctx.signal,
          deadline: ctx.deadline,
          traceparent: ctx.traceparent,
          onScheduled: (id) => {
            deviceId = id;
            enterStage(inferenceV1.Stage.SCHEDULED);
          },
          onProgress: (progress) => {
            enterStage(inferenceV1.Stage.DENOISING);
            enqueue({ progress: toProtoProgress(progress) });
            if (progress.step >= progress.total) enterStage(inferenceV1.Stage.DECODING);
          },
        });
        await sending;
        await send({ result: toProtoResult(result) });
      },
      getCapabilities: async (req, ctx) => {
        const deviceId = req.deviceId ? parseDeviceId(req.deviceId) : undefined;
        const held = models.onVram({ modelId: req.modelId || undefined, deviceId });
        const list = await Promise.all(
          held.map(async (h) =>
            toProtoCapabilities(
              h.modelId,
              h.deviceId,
              await models.capabilities(h.deviceId, h.modelId, { traceparent: ctx.traceparent }),
            ),
          ),
        );
        return { models: list };
      },
    },
    // Direct generation bypasses processing's quotas and ownership: operators and services only.
    { default: ['operator', 'internal'], methods: { getCapabilities: ['client', 'operator', 'internal'] } },
  );
}
