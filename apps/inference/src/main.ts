import { config, telemetry } from './register';
import { call, createClient } from '@dops/grpc-client';
import { GenerateStage, Generator, InferenceModels, inferenceService } from '@dops/inference';
import { modelV1 } from '@dops/proto';
import { modelHostService } from '@dops/model-host';
import { runMain, runWorkerService } from '@dops/service-host';
import { modelRootsOf } from './config';

const { inference } = config;

let stage: GenerateStage | undefined;

runMain('inference', async () => {
  const running = await runWorkerService({
    name: 'inference',
    config,
    telemetry,
    // The worker confines the images it reads and writes to these roots too.
    workerEnv: { DOPS_ARTIFACT_ROOT: inference.artifactRoot, DOPS_INPUT_ROOT: inference.inputRoot },
    services: (pool, logger) => {
      const models = new InferenceModels(pool, logger);
      const generator = new Generator(models, {
        inputRoot: inference.inputRoot,
        modelRoots: modelRootsOf(inference.modelRoots),
        maxGenerationMs: inference.maxGenerationMs,
      });
      // Without a Redis URL the service serves gRPC only.
      if (config.queue.redisUrl) {
        const modelService = inference.modelServiceAddress
          ? createClient(modelV1.ModelServiceClient, inference.modelServiceAddress)
          : undefined;
        stage = new GenerateStage(generator, models, pool, {
          redisUrl: config.queue.redisUrl,
          queue: config.queue,
          logger,
          // A job for a model no device holds: the model service loads it here (on the first ready device).
          ensureLoaded: modelService
            ? async (modelId, signal) => {
                const device = pool.list().find((w) => w.supervisor.state === 'ready') ?? pool.list()[0]!;
                await call(
                  modelService.loadModel,
                  { modelId, deviceId: device.device.id, tier: modelV1.Tier.VRAM },
                  { signal, deadlineMs: inference.maxGenerationMs },
                );
              }
            : undefined,
        });
      }
      return [
        inferenceService(generator, models),
        modelHostService(models, { configDir: inference.configDir }),
      ];
    },
  });
  if (stage) {
    await stage.start();
    running.server.onShutdown(() => stage!.stop());
    running.logger.info({ nodeId: stage.nodeId }, 'consuming the inference queues');
  }
});
