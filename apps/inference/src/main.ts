import { config, telemetry } from './register';
import { Generator, InferenceModels, inferenceService } from '@dops/inference';
import { modelHostService } from '@dops/model-host';
import { runMain, runWorkerService } from '@dops/service-host';
import { modelRootsOf } from './config';

const { inference } = config;

runMain('inference', () =>
  runWorkerService({
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
      return [
        inferenceService(generator, models),
        modelHostService(models, { configDir: inference.configDir }),
      ];
    },
  }),
);
