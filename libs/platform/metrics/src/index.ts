// @dops/metrics — Prometheus metrics of a dops process: the metrics, named once (DopsMetrics,
// processMetrics() for the process-wide one), and the HTTP endpoint that serves them.
export { DopsMetrics, processMetrics } from './dops-metrics';
export type { DeviceMemoryReading, QueueDepth, WorkerRestarts } from './dops-metrics';
export { startMetricsServer } from './metrics-server';
export type { MetricsServer, MetricsServerOptions } from './metrics-server';
export { sampleValue } from './exposition';
