export { parseDeviceId } from './device-id';
export { workerPoolFromConfig } from './from-config';
export { reportWorkerHealth } from './report-health';
export type { ServingSink } from './report-health';
export { WorkerPool } from './worker-pool';
export type { BackendChoice, PooledWorker, WorkerPoolEvents, WorkerPoolOptions } from './worker-pool';
