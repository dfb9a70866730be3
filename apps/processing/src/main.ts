import { config, telemetry } from './register';
import { DopsError } from '@dops/errors';
import { call, createClient } from '@dops/grpc-client';
import { createGrpcServer, installSignalHandlers } from '@dops/grpc-server';
import { modelV1 } from '@dops/proto';
import { Processing, processingService } from '@dops/processing';
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
    // A model the registry knows is accepted even when no node holds it yet (it is loaded on pick-up).
    modelExists: models
      ? (id) =>
          call(models.getModel, { id }, { deadlineMs: 5_000 }).then(
            () => true,
            (err: unknown) => {
              if (err instanceof DopsError && (err.code === 'NOT_FOUND' || err.code === 'INVALID_ARGUMENT'))
                return false;
              throw err;
            },
          )
      : undefined,
    redisUrl: redisUrlOf(config.queue),
    prefix: config.queue.prefix,
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
