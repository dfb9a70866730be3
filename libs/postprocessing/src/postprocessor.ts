import { DopsError } from '@dops/errors';
import type { postprocessingV1 } from '@dops/proto';
import {
  DeviceLane,
  parseDeviceId,
  type DeviceFleet,
  type PooledWorker,
  type WorkerPool,
} from '@dops/worker-pool';
import type { ProgressParams } from '@dops/worker-supervisor';
import {
  defined,
  formatName,
  imageParams,
  policyOf,
  Violations,
  withProtoFields,
  type PostprocessRoots,
  type SafetyPolicyName,
  type WorkerPostprocessParams,
} from './postprocess-request';

export interface PostprocessorOptions extends PostprocessRoots {
  /** The safety checker folder CheckSafety uses when a request names none; default none (then model_path is required). */
  safetyCheckerPath?: string;
  /** Policy for a request that sets none; default `flag`. */
  defaultSafetyPolicy?: SafetyPolicyName;
  /** Longest operation of a call without a deadline; default 600 000 ms. */
  maxRequestMs?: number;
  /** The artifact-root-relative folder outputs go to; default one folder per UTC day (`2024-06-01`). */
  outputDirFor?: (now: Date) => string;
  /**
   * The devices' scheduling (cordon, drain): no operation starts on a cordoned device (one that
   * names it fails FAILED_PRECONDITION; one that does not waits for a device), and each counts as
   * work on its device until it ends. Unset: every device takes work.
   */
  fleet?: DeviceFleet;
}

export interface RunOptions {
  /** Empty = the ready device with the fewest running requests. */
  deviceId?: string;
  /** Aborting cancels the operation (an upscale stops between tiles). */
  signal?: AbortSignal;
  deadline?: Date;
  traceparent?: string;
  /** Per tile of an upscale; once for the other operations. */
  onProgress?: (progress: ProgressParams) => void;
}

export interface WorkerArtifact {
  path: string;
  sha256: string;
  width: number;
  height: number;
  format: string;
  quality?: number;
}

/** `postprocess.run`'s result, as the worker sends it (python postprocessing/operations.py). */
export interface WorkerPostprocessResult {
  operation: string;
  image: WorkerArtifact | null;
  scale?: number;
  architecture?: string;
  tiles?: number;
  nsfw?: boolean;
  policy?: SafetyPolicyName;
  action?: 'passed' | 'flagged' | 'blurred' | 'blocked';
  blocked?: boolean;
  blurRadius?: number;
}

export interface PostprocessOutcome extends WorkerPostprocessResult {
  deviceId: string;
}

/**
 * Runs postprocessing operations on the workers of a pool: validation at the edge (nothing
 * reaches a worker until every field passed), device choice, the worker call with cancel,
 * deadline and progress. Every method throws INVALID_ARGUMENT naming the proto field,
 * NOT_FOUND for an unknown device or file, UNAVAILABLE when no worker is ready,
 * CANCELLED / DEADLINE_EXCEEDED, or the worker's error with its field renamed to the proto's.
 */
export class Postprocessor {
  private readonly maxRequestMs: number;
  private readonly lanes = new Map<string, DeviceLane>();
  private readonly outputDirFor: (now: Date) => string;
  readonly defaultSafetyPolicy: SafetyPolicyName;

  constructor(
    private readonly pool: WorkerPool,
    private readonly options: PostprocessorOptions,
  ) {
    this.maxRequestMs = options.maxRequestMs ?? 600_000;
    this.outputDirFor = options.outputDirFor ?? ((now) => now.toISOString().slice(0, 10));
    this.defaultSafetyPolicy = options.defaultSafetyPolicy ?? 'flag';
  }

  async upscale(req: postprocessingV1.UpscaleRequest, options: RunOptions = {}): Promise<PostprocessOutcome> {
    const v = new Violations();
    const params = this.common('upscale', req.image, v);
    params.modelPath = v.confined(req.modelPath, this.options.modelRoots, 'model_path', 'a model root');
    const tileSize = v.intIn(req.tileSize, 0, 2048, 'tile_size');
    if (tileSize !== undefined && tileSize > 0 && tileSize < 32)
      v.add('tile_size', 'must be 0 (no tiling) or between 32 and 2048');
    const tileOverlap = v.intIn(req.tileOverlap, 0, 256, 'tile_overlap');
    if (tileOverlap !== undefined && (tileSize ?? 512) > 0 && tileOverlap * 2 >= (tileSize ?? 512))
      v.add('tile_overlap', 'must be less than half of tile_size');
    v.throwIfAny();
    return this.run({ ...params, ...defined({ tileSize, tileOverlap }) }, options);
  }

  async restoreFaces(
    req: postprocessingV1.RestoreFacesRequest,
    options: RunOptions = {},
  ): Promise<PostprocessOutcome> {
    const v = new Violations();
    const params = this.common('faceRestore', req.image, v);
    params.modelPath = v.confined(req.modelPath, this.options.modelRoots, 'model_path', 'a model root');
    const strength = v.numberIn(req.strength, 0, 1, 'strength');
    const faceSize = v.intIn(req.faceSize, 64, 1024, 'face_size');
    if (faceSize !== undefined && faceSize % 32 !== 0) v.add('face_size', 'must be a multiple of 32');
    v.throwIfAny();
    return this.run({ ...params, ...defined({ strength, faceSize }) }, options);
  }

  /** A blocked image is a successful result (`blocked: true`, no image); see the queue stage for workflows. */
  async checkSafety(
    req: Pick<postprocessingV1.CheckSafetyRequest, 'image' | 'policy' | 'modelPath' | 'blurRadius'>,
    options: RunOptions = {},
  ): Promise<PostprocessOutcome> {
    const v = new Violations();
    const params = this.common('safety', req.image, v);
    const model = req.modelPath || this.options.safetyCheckerPath;
    if (!model) v.add('model_path', 'is required: no default safety checker is configured on this service');
    else params.modelPath = v.confined(model, this.options.modelRoots, 'model_path', 'a model root');
    let policy: SafetyPolicyName = this.defaultSafetyPolicy;
    try {
      policy = policyOf(req.policy, this.defaultSafetyPolicy);
    } catch {
      v.add('policy', 'must be SAFETY_POLICY_FLAG, SAFETY_POLICY_BLUR or SAFETY_POLICY_BLOCK');
    }
    const blurRadius = v.numberIn(req.blurRadius, 1, 512, 'blur_radius');
    v.throwIfAny();
    return this.run({ ...params, policy, ...defined({ blurRadius }) }, options);
  }

  async convert(req: postprocessingV1.ConvertRequest, options: RunOptions = {}): Promise<PostprocessOutcome> {
    const v = new Violations();
    const params = this.common('convert', req.image, v);
    const format = formatName(req.format);
    if (!format) v.add('format', 'must be IMAGE_FORMAT_PNG, IMAGE_FORMAT_JPEG or IMAGE_FORMAT_WEBP');
    const quality = v.intIn(req.quality, 1, 100, 'quality');
    if (quality !== undefined && format === 'png')
      v.add('quality', 'is only allowed for JPEG and WebP (PNG is lossless)');
    v.throwIfAny();
    return this.run({ ...params, format: format ?? 'png', ...defined({ quality }) }, options);
  }

  private common(
    operation: WorkerPostprocessParams['operation'],
    image: string,
    v: Violations,
  ): WorkerPostprocessParams {
    return imageParams(operation, image, this.options, this.outputDirFor(new Date()), v);
  }

  private async run(params: WorkerPostprocessParams, options: RunOptions): Promise<PostprocessOutcome> {
    const worker = await this.schedulableWorker(options);
    const work = this.send(worker, params, options);
    return this.options.fleet ? this.options.fleet.track(worker.device.id, work) : work;
  }

  /** Through the device's lane: a request waits there, not inside the worker, and one cancelled while waiting never reaches it. */
  private async send(
    worker: PooledWorker,
    params: WorkerPostprocessParams,
    options: RunOptions,
  ): Promise<PostprocessOutcome> {
    try {
      const result = await this.lane(worker.device.id).request<WorkerPostprocessResult>(
        'postprocess.run',
        params,
        {
          signal: options.signal,
          deadline: options.deadline,
          timeoutMs: this.maxRequestMs,
          traceparent: options.traceparent,
          onProgress: options.onProgress,
        },
      );
      return { ...result, deviceId: worker.device.id };
    } catch (err) {
      // The call's own reason (client cancel vs. deadline) beats the worker's view of it.
      if (options.signal?.aborted && options.signal.reason instanceof Error) throw options.signal.reason;
      throw withProtoFields(err);
    }
  }

  /** Requests running on and waiting for the worker's device. */
  private load(w: PooledWorker): number {
    return w.supervisor.health().activeRequests + (this.lanes.get(w.device.id)?.waiting ?? 0);
  }

  /** The only sender of work to the device's worker (one request at a time). */
  private lane(deviceId: string): DeviceLane {
    let lane = this.lanes.get(deviceId);
    if (!lane) {
      lane = new DeviceLane(() => this.pool.get(deviceId).supervisor, {
        maxBatch: 1,
        batchWaitMs: 0,
        maxRequestMs: this.maxRequestMs,
      });
      this.lanes.set(deviceId, lane);
    }
    return lane;
  }

  /** A worker whose device is not cordoned: the named one (FAILED_PRECONDITION when cordoned), else waits for one. */
  private async schedulableWorker(options: RunOptions): Promise<PooledWorker> {
    const { fleet } = this.options;
    let worker = this.workerFor(options.deviceId);
    if (!fleet?.isCordoned(worker.device.id)) return worker;
    if (options.deviceId)
      throw new DopsError('FAILED_PRECONDITION', `device_id: device ${worker.device.id} is cordoned`, {
        violations: [{ field: 'device_id', description: 'the device is cordoned' }],
      });
    while (fleet.isCordoned(worker.device.id)) {
      const free = this.pool
        .list()
        .find((w) => !fleet.isCordoned(w.device.id) && w.supervisor.state === 'ready');
      if (free) return free;
      await fleet.waitSchedulable(worker.device.id, options.signal);
      worker = this.workerFor(undefined);
    }
    return worker;
  }

  /** `deviceId`'s worker (INVALID_ARGUMENT / NOT_FOUND for a bad one), else the least busy ready one. */
  private workerFor(deviceId: string | undefined): PooledWorker {
    if (deviceId) return this.pool.get(parseDeviceId(deviceId));
    const ready = this.pool.list().filter((w) => w.supervisor.state === 'ready');
    if (ready.length === 0) throw DopsError.unavailable('no postprocessing worker is ready on this node');
    return ready.reduce((best, w) => (this.load(w) < this.load(best) ? w : best));
  }
}
