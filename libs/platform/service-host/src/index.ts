export { runMain, runWorkerService } from './run-worker-service';
export type { RunningWorkerService, WorkerServiceSpec } from './run-worker-service';
