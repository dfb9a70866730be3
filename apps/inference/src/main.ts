import { config, telemetry } from './register';
import { delimiter } from 'node:path';
import { call, createClient } from '@dops/grpc-client';
import { GenerateStage, Generator, InferenceModels, inferenceService } from '@dops/inference';
import { modelV1 } from '@dops/proto';
import { modelHostService } from '@dops/model-host';
import { redisUrlOf } from '@dops/queue';
import { serviceClientCredentials } from '@dops/security';
import { DeviceFleet, deviceHostService, memoryHostService } from '@dops/worker-pool';
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
    workerEnv: {
      DOPS_ARTIFACT_ROOT: inference.artifactRoot,
      DOPS_INPUT_ROOT: inference.inputRoot,
      // The worker confines model files and config folders to these roots too.
      DOPS_MODEL_ROOTS: [
        ...modelRootsOf(inference.modelRoots),
        ...(inference.configDir ? [inference.configDir] : []),
      ].join(delimiter),
      DOPS_ALLOW_UNSAFE_PICKLE: config.worker.allowUnsafePickle ? '1' : '0',
    },
    services: (pool, logger) => {
      // This service owns its workers: cordon, drain and reset (through the device service) act here.
      const fleet = new DeviceFleet(pool, 'inference');
      const models = new InferenceModels(pool, logger, {
        lane: {
          maxBatch: inference.maxBatch,
          batchWaitMs: inference.batchWaitMs,
          maxRequestMs: inference.maxGenerationMs,
        },
        unloadWaitMs: inference.unloadWaitMs,
      });
      const generator = new Generator(models, {
        inputRoot: inference.inputRoot,
        modelRoots: modelRootsOf(inference.modelRoots),
        maxGenerationMs: inference.maxGenerationMs,
        fleet,
      });
      // Without a Redis URL the service serves gRPC only.
      if (config.queue.redisUrl) {
        const modelService = inference.modelServiceAddress
          ? createClient(modelV1.ModelServiceClient, inference.modelServiceAddress, {
              credentials: serviceClientCredentials(config.security),
            })
          : undefined;
        stage = new GenerateStage(generator, models, pool, {
          // The configured URL with the password file and TLS files folded in.
          redisUrl: redisUrlOf(config.queue),
          queue: config.queue,
          logger,
          fleet,
          // Enough jobs at once per device for a full batch to form.
          jobsPerDevice: inference.maxBatch,
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
        deviceHostService(fleet),
        memoryHostService(pool, 'inference'),
        modelHostService(models, {
          modelRoots: modelRootsOf(inference.modelRoots),
          configDir: inference.configDir,
        }),
      ];
    },
  });
  if (stage) {
    await stage.start();
    running.server.onShutdown(() => stage!.stop());
    running.logger.info({ nodeId: stage.nodeId }, 'consuming the inference queues');
  }
});
