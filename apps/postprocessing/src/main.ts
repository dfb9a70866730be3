import { config, telemetry } from './register';
import { Postprocessor, postprocessingService } from '@dops/postprocessing';
import { runMain, runWorkerService } from '@dops/service-host';
import { modelRootsOf } from './config';

const { postprocessing } = config;

runMain('postprocessing', () =>
  runWorkerService({
    name: 'postprocessing',
    config,
    telemetry,
    // The worker confines the images it reads and writes to these roots too.
    workerEnv: {
      DOPS_ARTIFACT_ROOT: postprocessing.artifactRoot,
      DOPS_INPUT_ROOT: postprocessing.inputRoot,
    },
    services: (pool) => [
      postprocessingService(
        new Postprocessor(pool, {
          inputRoot: postprocessing.inputRoot,
          artifactRoot: postprocessing.artifactRoot,
          modelRoots: modelRootsOf(postprocessing.modelRoots),
          safetyCheckerPath: postprocessing.safetyCheckerPath,
          defaultSafetyPolicy: postprocessing.defaultSafetyPolicy,
          maxRequestMs: postprocessing.maxRequestMs,
        }),
      ),
    ],
  }),
);
