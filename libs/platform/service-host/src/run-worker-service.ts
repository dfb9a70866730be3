import type { BaseServiceConfig } from '@dops/config';
import {
  createGrpcServer,
  installSignalHandlers,
  type GrpcServer,
  type ServiceRegistration,
} from '@dops/grpc-server';
import { createServerSecurity } from '@dops/security';
import { createLogger, type Logger, type Telemetry } from '@dops/telemetry';
import { reportWorkerHealth, workerPoolFromConfig, type WorkerPool } from '@dops/worker-pool';
import type { ServiceDefinition } from '@grpc/grpc-js';
import { serveMetrics, shutdownDeadlineMs } from './serve-metrics';
import { watchPoolMetrics } from './pool-metrics';

export interface WorkerServiceSpec {
  /** Service name in logs and worker names, e.g. `device`. */
  name: string;
  config: BaseServiceConfig;
  telemetry: Telemetry;
  /** Variables the workers get beside this process's environment (e.g. their file roots). */
  workerEnv?: Record<string, string>;
  /** Stop on SIGTERM/SIGINT and exit. Default true; tests that run a service in-process say false. */
  handleSignals?: boolean;
  /** The gRPC services to serve over the started pool; each reports NOT_SERVING while a worker crash-loops. */
  services: (pool: WorkerPool, logger: Logger) => ServiceRegistration<ServiceDefinition>[];
}

export interface RunningWorkerService {
  server: GrpcServer;
  pool: WorkerPool;
  port: number;
  /** The /metrics port, when metrics are enabled. */
  metricsPort: number | undefined;
  logger: Logger;
}

/**
 * Starts a service that supervises one Python worker per device: logger, worker pool, gRPC
 * server (health, reflection) and SIGTERM/SIGINT handling that stops the calls, then the
 * workers, then telemetry. Rejects when the first worker cannot start.
 */
export async function runWorkerService(spec: WorkerServiceSpec): Promise<RunningWorkerService> {
  const { name, config } = spec;
  const logger = createLogger({ name, level: config.logLevel });
  const pool = workerPoolFromConfig(name, config.worker, logger, {
    ...workerTelemetryEnv(config.telemetry),
    ...spec.workerEnv,
  });
  await pool.start();
  const services = spec.services(pool, logger);
  const server = createGrpcServer({
    name,
    logger,
    security: createServerSecurity(config.security),
    ...config.grpc,
    shutdownGraceMs: config.shutdownGraceMs,
    services,
  });
  for (const s of services) reportWorkerHealth(pool, server.health, s.serviceName);
  server.onShutdown(() => pool.stop());
  watchPoolMetrics(pool, name);
  const metrics = await serveMetrics(name, config, logger, server);
  if (spec.handleSignals ?? true)
    installSignalHandlers(server, {
      logger,
      hooks: [() => spec.telemetry.shutdown()],
      deadlineMs: shutdownDeadlineMs(config),
    });
  const port = await server.start();
  logger.info(
    { port, metricsPort: metrics?.port, devices: pool.list().map((w) => w.device.id) },
    `${name} service listening on ${config.grpc.host}:${port}`,
  );
  return { server, pool, port, metricsPort: metrics?.port, logger };
}

/** For `main.ts`: runs `start`, and on failure prints the reason and exits 1. */
export function runMain(name: string, start: () => Promise<unknown>): void {
  start().catch((err: unknown) => {
    process.stderr.write(
      `${name} service failed to start: ${err instanceof Error ? err.message : String(err)}\n`,
    );
    process.exit(1);
  });
}

/**
 * The service's one telemetry setting, handed to its workers: they export their spans to the
 * same endpoint with the same protocol, as `<service name>-worker`. No endpoint: the variables are
 * passed empty, so a worker never exports on its own.
 */
export function workerTelemetryEnv(telemetry: BaseServiceConfig['telemetry']): Record<string, string> {
  return {
    DOPS_TELEMETRY_OTLP_ENDPOINT: telemetry.otlpEndpoint ?? '',
    DOPS_TELEMETRY_OTLP_PROTOCOL: telemetry.otlpProtocol,
    DOPS_TELEMETRY_SERVICE_NAME: `${telemetry.serviceName}-worker`,
  };
}
