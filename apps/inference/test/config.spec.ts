import { delimiter } from 'node:path';
import { inferenceConfig, modelRootsOf } from '../src/config';
import { devSecurityEnv } from '@dops/security';

describe('inference config', () => {
  it('serves on 50054 and reads the roots under the names the worker uses', () => {
    const config = inferenceConfig.load({
      env: {
        ...devSecurityEnv('inference'),
        DOPS_ARTIFACT_ROOT: '/data/out',
        DOPS_INPUT_ROOT: '/data/in',
        DOPS_INFERENCE_MODEL_ROOTS: `/m/a${delimiter}/m/b`,
      },
    });
    expect(config.grpc.port).toBe(50054);
    expect(config.inference).toMatchObject({
      artifactRoot: '/data/out',
      inputRoot: '/data/in',
      maxGenerationMs: 600_000,
    });
    expect(modelRootsOf(config.inference.modelRoots)).toEqual(['/m/a', '/m/b']);
  });

  it('asks the model and memory services on this node about cold loads by default', () => {
    const { inference } = inferenceConfig.load({
      env: { ...devSecurityEnv('inference'), DOPS_INFERENCE_MEMORY_ADDRESS: 'memory:50052' },
    });
    expect(inference).toMatchObject({
      modelServiceAddress: '127.0.0.1:50053',
      memoryAddress: 'memory:50052',
      workingMemoryBytes: 1024 ** 3,
    });
    expect(inferenceConfig.load({ env: { ...devSecurityEnv('inference') } }).inference.memoryAddress).toBe(
      '127.0.0.1:50052',
    );
  });

  it('lists no model roots by default', () => {
    expect(
      modelRootsOf(inferenceConfig.load({ env: { ...devSecurityEnv('inference') } }).inference.modelRoots),
    ).toEqual([]);
  });
});
