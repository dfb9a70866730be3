import { config, telemetry } from './register';
import { createArtifactStore } from '@dops/artifact-store';
import { createClient } from '@dops/grpc-client';
import { createGrpcServer, installSignalHandlers } from '@dops/grpc-server';
import { modelV1 } from '@dops/proto';
import { Processing, modelServiceCatalog, processingService } from '@dops/processing';
import { redisUrlOf } from '@dops/queue';
import { createServerSecurity, serviceClientCredentials } from '@dops/security';
import { runMain } from '@dops/service-host';
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
  installSignalHandlers(server, { logger, hooks: [() => telemetry.shutdown()] });
  const port = await server.start();
  logger.info({ port }, `processing service listening on ${config.grpc.host}:${port}`);
});
