export { Postprocessor } from './postprocessor';
export type {
  PostprocessOutcome,
  PostprocessorOptions,
  RunOptions,
  WorkerArtifact,
  WorkerPostprocessResult,
} from './postprocessor';
export { postprocessingService, toProtoArtifact } from './postprocessing-service';
export {
  IMAGE_FORMATS,
  SAFETY_POLICIES,
  policyOf,
  protoFieldOf,
  toProtoFormat,
  toProtoPolicy,
  withProtoFields,
} from './postprocess-request';
export type {
  ImageFormatName,
  Operation,
  PostprocessRoots,
  SafetyPolicyName,
  WorkerPostprocessParams,
} from './postprocess-request';
export { postprocessingStage } from './queue/postprocessing-stage';
export type { PostprocessStageParams } from './queue/postprocessing-stage';
