import type { BaseServiceConfig } from '@dops/config';
import {
  createGrpcServer,
  installSignalHandlers,
  type GrpcServer,
  type ServiceRegistration,
} from '@dops/grpc-server';
import { createServerSecurity } from '@dops/security';
import { createLogger, type Logger, type Telemetry } from '@dops/telemetry';
import type { ServiceDefinition } from '@grpc/grpc-js';
import { serveMetrics, shutdownDeadlineMs } from './serve-metrics';

export interface ServiceSpec {
  /** Service name in logs, e.g. `device`. */
  name: string;
  config: BaseServiceConfig;
  telemetry: Telemetry;
  /** Stop on SIGTERM/SIGINT and exit. Default true; tests that run a service in-process say false. */
  handleSignals?: boolean;
  services: (logger: Logger) => ServiceRegistration<ServiceDefinition>[];
  /** Called on shutdown after the calls ended (close clients). */
  onShutdown?: () => Promise<void> | void;
}

export interface RunningService {
  server: GrpcServer;
  port: number;
  /** The /metrics port, when metrics are enabled. */
  metricsPort: number | undefined;
  logger: Logger;
}

/**
 * Starts a service without workers of its own (device, memory): logger, gRPC server (health,
 * reflection), the /metrics endpoint (config `metrics`) and SIGTERM/SIGINT handling that stops the calls, then telemetry.
 */
export async function runService(spec: ServiceSpec): Promise<RunningService> {
  const { name, config } = spec;
  const logger = createLogger({ name, level: config.logLevel });
  const server = createGrpcServer({
    name,
    logger,
    security: createServerSecurity(config.security),
    ...config.grpc,
    shutdownGraceMs: config.shutdownGraceMs,
    services: spec.services(logger),
  });
  if (spec.onShutdown) server.onShutdown(spec.onShutdown);
  const metrics = await serveMetrics(name, config, logger, server);
  if (spec.handleSignals ?? true)
    installSignalHandlers(server, {
      logger,
      hooks: [() => spec.telemetry.shutdown()],
      deadlineMs: shutdownDeadlineMs(config),
    });
  const port = await server.start();
  logger.info(
    { port, metricsPort: metrics?.port },
    `${name} service listening on ${config.grpc.host}:${port}`,
  );
  return { server, port, metricsPort: metrics?.port, logger };
}
