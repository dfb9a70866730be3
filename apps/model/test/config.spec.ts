import { ConfigError } from '@dops/config';
import { modelConfig } from '../src/config';
import { devSecurityEnv } from '@dops/security';

describe('model service config', () => {
  it('loads the defaults with the roots from the environment', () => {
    const config = modelConfig.load({
      env: { ...devSecurityEnv('model'), DOPS_MODEL_ROOTS: '/models:/more' },
    });
    expect(config.grpc.port).toBe(50053);
    expect(config.model).toMatchObject({
      roots: '/models:/more',
      keepAliveMs: 600_000,
      ramBudgetBytes: 0,
      memoryAddress: '127.0.0.1:50052',
    });
  });

  it('refuses a start without model roots', () => {
    expect(() => modelConfig.load({ env: { ...devSecurityEnv('model') } })).toThrow(ConfigError);
  });
});
