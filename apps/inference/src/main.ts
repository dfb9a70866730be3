import { config, telemetry } from './register';
import { delimiter } from 'node:path';
import {
  GenerateStage,
  Generator,
  GrpcModelIdentities,
  InferenceModels,
  NodeLoader,
  inferenceService,
} from '@dops/inference';
import { GrpcReservations, modelHostService } from '@dops/model-host';
import { redisUrlOf } from '@dops/queue';
import { serviceClientCredentials } from '@dops/security';
import { DeviceFleet, deviceHostService, memoryHostService } from '@dops/worker-pool';
import { runMain, runWorkerService } from '@dops/service-host';
import { modelRootsOf } from './config';

const { inference } = config;

let stage: GenerateStage | undefined;
let loader: NodeLoader | undefined;

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
        const credentials = serviceClientCredentials(config.security);
        // Cold loads are decided here: the registry says what the file is, the memory service
        // where it fits; evictions and the load go through the device's lane.
        loader = inference.modelServiceAddress
          ? new NodeLoader(models, pool, {
              identities: new GrpcModelIdentities(inference.modelServiceAddress, credentials),
              reservations: inference.memoryAddress
                ? new GrpcReservations(inference.memoryAddress, credentials)
                : undefined,
              workingMemoryBytes: inference.workingMemoryBytes,
              modelRoots: modelRootsOf(inference.modelRoots),
              configDir: inference.configDir,
              fleet,
              logger,
            })
          : undefined;
        if (loader && !inference.memoryAddress)
          logger.warn({}, 'no memory service configured: VRAM loads are not reserved');
        stage = new GenerateStage(generator, models, pool, {
          // The configured URL with the password file and TLS files folded in.
          redisUrl: redisUrlOf(config.queue),
          queue: config.queue,
          logger,
          fleet,
          // Enough jobs at once per device for a full batch to form.
          jobsPerDevice: inference.maxBatch,
          // A job for a model no device holds: loaded here, on the device NodeLoader picks.
          ensureLoaded: loader ? (modelId, signal) => loader!.ensureOnVram(modelId, signal) : undefined,
          // Eviction plans take the least recently used model, not the earliest loaded.
          onUse: loader ? (modelId, deviceId) => loader!.used(modelId, deviceId) : undefined,
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
    running.server.onShutdown(() => {
      loader?.close();
      return stage!.stop();
    });
    running.logger.info({ nodeId: stage.nodeId }, 'consuming the inference queues');
  }
});
