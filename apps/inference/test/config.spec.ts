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

  it('lists no model roots by default', () => {
    expect(
      modelRootsOf(inferenceConfig.load({ env: { ...devSecurityEnv('inference') } }).inference.modelRoots),
    ).toEqual([]);
  });
});
