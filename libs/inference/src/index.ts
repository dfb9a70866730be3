export { Generator } from './generator';
export type { GenerateCall, GenerateOutcome, GeneratorOptions, WorkerGenerateResult } from './generator';
export { InferenceModels } from './inference-models';
export type { HeldModel } from './inference-models';
export { inferenceService, toProtoResult } from './inference-service';
export { SCHEDULER_NAMES, protoFieldOf, toWorkerParams, withProtoFields } from './generation-request';
export type { RequestRoots, WorkerGenerateParams, WorkerMode } from './generation-request';
export { toProtoCapabilities } from './worker-capabilities';
export type { WorkerCapabilities } from './worker-capabilities';
