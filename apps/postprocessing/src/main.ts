import { config, telemetry } from './register';
import { delimiter } from 'node:path';
import { Postprocessor, postprocessingService, postprocessingStage } from '@dops/postprocessing';
import { StageWorker, redisUrlOf } from '@dops/queue';
import { runMain, runWorkerService } from '@dops/service-host';
import { DeviceFleet, deviceHostService, memoryHostService } from '@dops/worker-pool';
import { modelRootsOf } from './config';

const { postprocessing, queue } = config;

runMain('postprocessing', async () => {
  let postprocessor: Postprocessor | undefined;
  let fleet: DeviceFleet | undefined;
  const running = await runWorkerService({
    name: 'postprocessing',
    config,
    telemetry,
    // The worker confines the images it reads and writes to these roots too.
    workerEnv: {
      DOPS_ARTIFACT_ROOT: postprocessing.artifactRoot,
      DOPS_INPUT_ROOT: postprocessing.inputRoot,
      DOPS_MODEL_ROOTS: modelRootsOf(postprocessing.modelRoots).join(delimiter),
      DOPS_ALLOW_UNSAFE_PICKLE: config.worker.allowUnsafePickle ? '1' : '0',
    },
    services: (pool) => {
      // This service owns its workers: cordon, drain and reset (through the device service) act here.
      fleet = new DeviceFleet(pool, 'postprocessing');
      postprocessor = new Postprocessor(pool, {
        fleet,
        inputRoot: postprocessing.inputRoot,
        artifactRoot: postprocessing.artifactRoot,
        modelRoots: modelRootsOf(postprocessing.modelRoots),
        safetyCheckerPath: postprocessing.safetyCheckerPath,
        defaultSafetyPolicy: postprocessing.defaultSafetyPolicy,
        maxRequestMs: postprocessing.maxRequestMs,
      });
      return [
        postprocessingService(postprocessor),
        deviceHostService(fleet),
        memoryHostService(pool, 'postprocessing'),
      ];
    },
  });
  // Without a Redis URL the service serves gRPC only; with one it also runs workflow stages.
  if (queue.redisUrl && postprocessor) {
    const stage = new StageWorker({
      queues: ['postprocessing'],
      // The configured URL with the password file and TLS files folded in.
      redisUrl: redisUrlOf(queue),
      prefix: queue.prefix,
      concurrency: queue.concurrency ?? Math.max(1, running.pool.list().length),
      lockDurationMs: queue.lockDurationMs,
      stalledIntervalMs: queue.stalledIntervalMs,
      maxStalledCount: queue.maxStalledCount,
      stages: ['upscale', 'face_restore', 'safety', 'convert'],
      process: postprocessingStage(postprocessor),
      logger: running.logger,
    });
    await stage.start();
    // Every device cordoned: take no stage jobs (they wait in the queue, or another node takes them).
    const followCordon = () => void (fleet?.allCordoned() ? stage.pause() : stage.resume());
    fleet?.on('change', followCordon);
    followCordon();
    running.server.onShutdown(() => stage.close());
    running.logger.info({}, 'consuming the postprocessing queue');
  }
});
