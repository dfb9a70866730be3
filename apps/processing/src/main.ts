import { config, telemetry } from './register';
import { createGrpcServer, installSignalHandlers } from '@dops/grpc-server';
import { Processing, processingService } from '@dops/processing';
import { redisUrlOf } from '@dops/queue';
import { runMain } from '@dops/service-host';
import { createLogger } from '@dops/telemetry';

runMain('processing', async () => {
  const logger = createLogger({ name: 'processing', level: config.logLevel });
  const processing = new Processing({
    ...config.processing,
    redisUrl: redisUrlOf(config.queue),
    prefix: config.queue.prefix,
  });
  await processing.start();
  const server = createGrpcServer({
    name: 'processing',
    logger,
    ...config.grpc,
    shutdownGraceMs: config.shutdownGraceMs,
    services: [processingService(processing)],
  });
  server.onShutdown(() => processing.close());
  installSignalHandlers(server, { logger, hooks: [() => telemetry.shutdown()] });
  const port = await server.start();
  logger.info({ port }, `processing service listening on ${config.grpc.host}:${port}`);
});
