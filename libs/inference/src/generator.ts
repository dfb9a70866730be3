import { workerV1, type inferenceV1 } from '@dops/proto';
import { DopsError } from '@dops/errors';
import type { DeviceFleet } from '@dops/worker-pool';
import type { ProgressParams } from '@dops/worker-supervisor';
import { toWorkerParams, withProtoFields, type RequestRoots } from './generation-request';
import type { InferenceModels } from './inference-models';
import { generateBatching } from './scheduling/generate-batching';

export interface GeneratorOptions extends RequestRoots {
  /** Longest generation when the caller set no deadline; default 600 000 ms. */
  maxGenerationMs?: number;
  /** The artifact-root-relative folder a request writes into; default one folder per UTC day (`2024-06-01`). */
  outputDirFor?: (now: Date) => string;
  /**
   * The devices' scheduling (cordon, drain): no generation starts on a cordoned device (a call
   * for it waits until it is uncordoned, or fails FAILED_PRECONDITION when it named the device),
   * and each one counts as work on its device until it ends. Unset: every device takes work.
   */
  fleet?: DeviceFleet;
}

export interface GenerateCall {
  params: inferenceV1.GenerationParams | undefined;
  /** Empty = model affinity. */
  deviceId?: string;
  /** 0 = no previews. */
  previewIntervalSeconds?: number;
  /** Aborting cancels the generation (the worker stops within one step). */
  signal?: AbortSignal;
  deadline?: Date;
  traceparent?: string;
  /** Called once the device is chosen, then for every denoising step; a throw is logged by the supervisor. */
  onScheduled?: (deviceId: string) => void;
  onProgress?: (progress: ProgressParams) => void;
}

/** `inference.generate`'s result: dops.worker.v1.GenerateResult. */
export type WorkerGenerateResult = workerV1.GenerateResult;

export interface GenerateOutcome extends WorkerGenerateResult {
  deviceId: string;
}

/**
 * Runs generations on the workers of an InferenceModels: validation at the edge (nothing reaches
 * a worker until every field passed), device choice by model affinity, the worker call with
 * cancel, deadline and progress.
 */
export class Generator {
  private readonly maxGenerationMs: number;
  private readonly outputDirFor: (now: Date) => string;

  constructor(
    private readonly models: InferenceModels,
    private readonly options: GeneratorOptions,
  ) {
    this.maxGenerationMs = options.maxGenerationMs ?? 600_000;
    this.outputDirFor = options.outputDirFor ?? ((now) => now.toISOString().slice(0, 10));
  }

  /**
   * Throws INVALID_ARGUMENT / FAILED_PRECONDITION naming the proto field (before any generation
   * work), NOT_FOUND for an unknown device, CANCELLED / DEADLINE_EXCEEDED, OUT_OF_MEMORY (with
   * the mitigations tried), or the worker's error otherwise.
   */
  async generate(call: GenerateCall): Promise<GenerateOutcome> {
    // The static checks first, so a malformed request never waits for a worker.
    const extra = {
      outputDir: this.outputDirFor(new Date()),
      previewIntervalSeconds: call.previewIntervalSeconds ?? 0,
    };
    toWorkerParams(call.params, undefined, this.options, extra);
    const modelId = call.params!.modelId;
    let { device } = await this.models.workerFor(modelId, call.deviceId);
    const { fleet } = this.options;
    if (fleet?.isCordoned(device.id)) {
      if (call.deviceId)
        throw new DopsError('FAILED_PRECONDITION', `device_id: device ${device.id} is cordoned`, {
          violations: [{ field: 'device_id', description: 'the device is cordoned' }],
        });
      await fleet.waitSchedulable(device.id, call.signal);
      ({ device } = await this.models.workerFor(modelId, device.id));
    }
    const work = this.run(call, extra, device.id);
    return fleet ? fleet.track(device.id, work) : work;
  }

  private async run(
    call: GenerateCall,
    extra: { outputDir: string; previewIntervalSeconds: number },
    deviceId: string,
  ): Promise<GenerateOutcome> {
    const modelId = call.params!.modelId;
    // A cancelled generation that still holds the worker (or gets it killed and restarted) holds
    // the device's lane too: this one waits there, and after a restart until its model is back.
    const device = { id: deviceId };
    const capabilities = await this.models
      .capabilities(device.id, modelId, { traceparent: call.traceparent })
      .catch((err: unknown) => {
        throw withProtoFields(err);
      });
    const workerParams = toWorkerParams(call.params, capabilities, this.options, extra);
    call.onScheduled?.(device.id);
    // The device's lane sends it (alone, or joined with compatible waiting requests).
    const request = this.models.lane(device.id).request(
      'inference.generate',
      workerParams,
      {
        signal: call.signal,
        deadline: call.deadline,
        timeoutMs: this.maxGenerationMs,
        traceparent: call.traceparent,
        onProgress: call.onProgress,
      },
      generateBatching(workerParams),
    );
    try {
      const result = await request;
      return { ...result, deviceId: device.id };
    } catch (err) {
      // The call's own reason (client cancel vs. deadline) beats the worker's view of it.
      if (call.signal?.aborted && call.signal.reason instanceof Error) throw call.signal.reason;
      throw withProtoFields(err);
    }
  }
}
