import { delimiter } from 'node:path';
import { modelRootsOf, postprocessingConfig } from '../src/config';
import { devSecurityEnv } from '@dops/security';

describe('postprocessing config', () => {
  it('serves on 50056 and reads the roots under the names the worker uses', () => {
    const config = postprocessingConfig.load({
      env: {
        ...devSecurityEnv('postprocessing'),
        DOPS_ARTIFACT_ROOT: '/data/out',
        DOPS_INPUT_ROOT: '/data/in',
        DOPS_POSTPROCESSING_MODEL_ROOTS: `/m/a${delimiter}/m/b`,
        DOPS_POSTPROCESSING_DEFAULT_SAFETY_POLICY: 'blur',
      },
    });
    expect(config.grpc.port).toBe(50056);
    expect(config.postprocessing).toMatchObject({
      artifactRoot: '/data/out',
      inputRoot: '/data/in',
      defaultSafetyPolicy: 'blur',
      maxRequestMs: 600_000,
    });
    expect(modelRootsOf(config.postprocessing.modelRoots)).toEqual(['/m/a', '/m/b']);
  });

  it('flags by default and names no safety checker', () => {
    const config = postprocessingConfig.load({ env: { ...devSecurityEnv('postprocessing') } });
    expect(config.postprocessing.defaultSafetyPolicy).toBe('flag');
    expect(config.postprocessing.safetyCheckerPath).toBeUndefined();
  });
});
