import type { BaseServiceConfig } from '@dops/config';
import type { GrpcServer } from '@dops/grpc-server';
import { processMetrics, startMetricsServer, type MetricsServer } from '@dops/metrics';
import type { Logger } from '@dops/telemetry';

/**
 * Starts the service's /metrics endpoint (config `metrics`; every series labelled `service`),
 * or nothing when `metrics.enabled` is false, and closes it when `grpc` shuts down. Rejects when
 * the port cannot be bound.
 */
export async function serveMetrics(
  name: string,
  config: Pick<BaseServiceConfig, 'metrics'>,
  logger: Logger,
  grpc: Pick<GrpcServer, 'onShutdown'>,
): Promise<MetricsServer | undefined> {
  if (!config.metrics.enabled) return undefined;
  const server = await startMetricsServer({
    registry: processMetrics().registry,
    host: config.metrics.host,
    port: config.metrics.port,
    labels: { service: name },
  });
  grpc.onShutdown(() => server.close());
  logger.info(
    { metricsPort: server.port },
    `metrics on http://${config.metrics.host}:${server.port}/metrics`,
  );
  return server;
}

/**
 * The bound on a service's whole shutdown (`installSignalHandlers`' deadline): the calls' grace,
 * the workers' graceful stop, and 5 s for the rest (queues, telemetry flush).
 */
export function shutdownDeadlineMs(config: Pick<BaseServiceConfig, 'shutdownGraceMs' | 'worker'>): number {
  return config.shutdownGraceMs + config.worker.stopTimeoutMs + 5_000;
}
