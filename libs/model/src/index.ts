export {
  type ModelBase,
  type ModelFormat,
  type ModelType,
  type ModelVariant,
  type Identification,
  MODEL_BASES,
  MODEL_TYPES,
} from './model-kind';
export {
  MAX_HEADER_BYTES,
  type SafetensorsHeader,
  type SafetensorsInvalidReason,
  type TensorInfo,
  parseSafetensorsHeader,
  readSafetensorsHeader,
  safetensorsInvalidReason,
} from './safetensors-header';
export { identifyTensors, loraBaseFromMetadata, type TensorShapes } from './identify';
export { DIFFUSERS_INDEX, identifyDiffusersFolder } from './identify-diffusers';
export { DEFAULT_TRIGGER_TAGS, extractTriggerWords } from './trigger-words';
export {
  autoV2,
  type FileHasher,
  type FileHashes,
  HashCache,
  type HashCacheEntry,
  type HashJob,
  type HashOptions,
  HashQueue,
  type HashQueueOptions,
  hashFile,
} from './hashing';
export { type ModelCandidate, PICKLE_EXTENSIONS, SAFETENSORS_EXTENSIONS, scanRoots } from './scan-roots';
export { pickleOnlyComponents } from './folder-weights';
export { type ModelEntry, type ModelStatus, modelId } from './model-entry';
export {
  type ListFilter,
  ModelRegistry,
  type ModelRegistryEvents,
  type ModelRegistryOptions,
  type ModelPage,
  type PageRequest,
  type RegistryState,
  type ScanSummary,
  type VerifyResult,
} from './registry';
export { modelService } from './service/model-service';
export { ModelLoader, type ModelLoaderEvents, type ModelLoaderOptions } from './service/model-loader';
export { GrpcModelHosts, type HostAddresses, parseHostAddresses } from './service/grpc-ports';
export type {
  DeviceResidency,
  HostLoadRequest,
  HostLoadResult,
  LoadEvent,
  LoadEventKind,
  LoadTimings,
  ModelHosts,
  ModelResidency,
  Reservations,
  ReserveAnswer,
  Tier,
} from './service/load-types';
export { fromProtoTier, toProtoTier } from './service/model-proto';
