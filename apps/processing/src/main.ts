import { config, telemetry } from './register';
import { createArtifactStore } from '@dops/artifact-store';
import { createClient } from '@dops/grpc-client';
import { createGrpcServer, installSignalHandlers } from '@dops/grpc-server';
import { modelV1 } from '@dops/proto';
import { Processing, modelServiceCatalog, processingService } from '@dops/processing';
import { processMetrics } from '@dops/metrics';
import { QueueDepths, createRedis, redisUrlOf } from '@dops/queue';
import { startQueueDashboard } from '@dops/queue-dashboard';
import { createServerSecurity, serviceClientCredentials } from '@dops/security';
import { runMain, serveMetrics, shutdownDeadlineMs } from '@dops/service-host';
import { createLogger } from '@dops/telemetry';

runMain('processing', async () => {
  const logger = createLogger({ name: 'processing', level: config.logLevel });
  const models = config.processing.modelServiceAddress
    ? createClient(modelV1.ModelServiceClient, config.processing.modelServiceAddress, {
        credentials: serviceClientCredentials(config.security),
      })
    : undefined;
  const processing = new Processing({
    ...config.processing,
    // Every model a job names is checked in the registry at submit; one no node holds yet is
    // loaded by the inference node that picks the job.
    catalog: models ? modelServiceCatalog(models) : undefined,
    redisUrl: redisUrlOf(config.queue),
    prefix: config.queue.prefix,
    logger,
    artifacts: {
      store: createArtifactStore(config.artifact),
      root: config.artifact.root,
      ttlMs: config.artifact.ttlHours * 3_600_000,
      sweepIntervalMs: config.artifact.sweepIntervalMs,
      logger,
    },
  });
  await processing.start();
  const server = createGrpcServer({
    name: 'processing',
    logger,
    security: createServerSecurity(config.security),
    ...config.grpc,
    shutdownGraceMs: config.shutdownGraceMs,
    services: [processingService(processing)],
  });
  server.onShutdown(() => processing.close());
  // Queue depth per queue, read with BullMQ's getJobCounts at each scrape.
  const depthReader = createRedis(redisUrlOf(config.queue), { onError: () => undefined });
  const depths = new QueueDepths(depthReader, redisUrlOf(config.queue), config.queue.prefix);
  processMetrics().addQueueSource(() => depths.read());
  server.onShutdown(async () => {
    await depths.close();
    depthReader.disconnect();
  });
  const metrics = await serveMetrics('processing', config, logger, server);
  const dashboard = config.admin.enabled
    ? await startQueueDashboard({
        redisUrl: redisUrlOf(config.queue),
        prefix: config.queue.prefix,
        security: config.security,
        host: config.admin.host,
        port: config.admin.port,
        logger,
      })
    : undefined;
  if (dashboard) server.onShutdown(() => dashboard.close());
  installSignalHandlers(server, {
    logger,
    hooks: [() => telemetry.shutdown()],
    deadlineMs: shutdownDeadlineMs(config),
  });
  const port = await server.start();
  logger.info(
    { port, metricsPort: metrics?.port, adminPort: dashboard?.port },
    `processing service listening on ${config.grpc.host}:${port}`,
  );
});
