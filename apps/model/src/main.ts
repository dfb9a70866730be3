import { config, telemetry } from './register';
import { delimiter } from 'node:path';
import { createGrpcServer, installSignalHandlers } from '@dops/grpc-server';
import { GrpcModelHosts, ModelLoader, ModelRegistry, modelService, parseHostAddresses } from '@dops/model';
import { GrpcReservations } from '@dops/model-host';
import { createServerSecurity, serviceClientCredentials } from '@dops/security';
import { runMain, serveMetrics, shutdownDeadlineMs } from '@dops/service-host';
import { createLogger } from '@dops/telemetry';

runMain('model', async () => {
  const logger = createLogger({ name: 'model', level: config.logLevel });
  const settings = config.model;
  const registry = new ModelRegistry({
    roots: settings.roots.split(delimiter).filter(Boolean),
    statePath: settings.statePath,
    allowUnsafePickle: settings.allowUnsafePickle,
  });
  registry.on('warning', (message) => logger.warn({ registry: true }, message));
  await registry.start();
  const hosts = new GrpcModelHosts(
    {
      fallback: settings.hostAddress || undefined,
      byDevice: parseHostAddresses(settings.hostAddresses, 'model.hostAddresses'),
    },
    serviceClientCredentials(config.security),
    settings.loadTimeoutMs,
  );
  const reservations = settings.memoryAddress
    ? new GrpcReservations(settings.memoryAddress, serviceClientCredentials(config.security))
    : undefined;
  if (!reservations) logger.warn('no memory service configured: VRAM loads are not reserved');
  const loader = new ModelLoader({
    registry,
    hosts,
    reservations,
    ramBudgetBytes: settings.ramBudgetBytes,
    keepAliveMs: settings.keepAliveMs,
    workingMemoryBytes: settings.workingMemoryBytes,
    configDir: settings.configDir || undefined,
  });
  loader.on('event', (e) => logger.info({ ...e }, `model ${e.kind}`));
  const server = createGrpcServer({
    name: 'model',
    logger,
    security: createServerSecurity(config.security),
    ...config.grpc,
    shutdownGraceMs: config.shutdownGraceMs,
    services: [modelService(registry, loader)],
  });
  server.onShutdown(async () => {
    loader.close();
    hosts.close();
    reservations?.close();
    await registry.close();
  });
  const metrics = await serveMetrics('model', config, logger, server);
  installSignalHandlers(server, {
    logger,
    hooks: [() => telemetry.shutdown()],
    deadlineMs: shutdownDeadlineMs(config),
  });
  const port = await server.start();
  logger.info(
    { port, metricsPort: metrics?.port, roots: settings.roots },
    `model service listening on ${config.grpc.host}:${port}`,
  );
});
