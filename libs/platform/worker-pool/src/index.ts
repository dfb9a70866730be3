export { parseDeviceId } from './device-id';
export { workerPoolFromConfig } from './from-config';
export { reportWorkerHealth } from './report-health';
export type { ServingSink } from './report-health';
export { WorkerPool } from './worker-pool';
export type { BackendChoice, PooledWorker, WorkerPoolEvents, WorkerPoolOptions } from './worker-pool';
// Hosting: what a worker-owning service (inference, postprocessing) serves about its own workers.
export { DeviceFleet } from './hosting/device-fleet';
export type {
  ChangeReason,
  DeviceChange,
  DeviceHealthView,
  DeviceView,
  DrainOptions,
  DrainOutcome,
  SchedulingState,
} from './hosting/device-fleet';
export { toProtoDevice, toProtoHostDevice } from './hosting/device-proto';
export { deviceHandlers } from './hosting/device-handlers';
export type { DeviceSource } from './hosting/device-handlers';
export { deviceHostService, fleetSource } from './hosting/device-host-service';
// Hosting, memory: the memory of a service's own workers (MemoryHostService), and the handlers the node's MemoryService shares.
export { DEFAULT_THRESHOLDS, pressureOf, validateThresholds } from './hosting/memory-pressure';
export type { PressureLevel, PressureThresholds } from './hosting/memory-pressure';
export { watchSnapshots } from './hosting/memory-snapshot';
export type {
  DeviceCleanup,
  DeviceMemory,
  MemoryCleanup,
  MemorySnapshot,
  MemorySource,
  SystemMemory,
  WorkerMemory,
} from './hosting/memory-snapshot';
export { PoolMemoryMonitor } from './hosting/memory-monitor';
export type { PoolMemoryMonitorOptions } from './hosting/memory-monitor';
export { fromProtoSnapshot, toProtoSnapshot } from './hosting/memory-proto';
export { MAX_WATCH_INTERVAL_MS, MIN_WATCH_INTERVAL_MS, memoryHandlers } from './hosting/memory-handlers';
export { memoryHostService } from './hosting/memory-host-service';
export { DeviceLane } from './hosting/device-lane';
export type { LaneBatching, LaneCall, LaneOptions } from './hosting/device-lane';
