export { runMain, runWorkerService } from './run-worker-service';
export type { RunningWorkerService, WorkerServiceSpec } from './run-worker-service';
export { runService } from './run-service';
export type { RunningService, ServiceSpec } from './run-service';
export { serveMetrics, shutdownDeadlineMs } from './serve-metrics';
export { watchPoolMetrics } from './pool-metrics';
