import { processingConfig } from '../src/config';
import { devSecurityEnv } from '@dops/security';

describe('processing config', () => {
  it('defaults to port 50055 and reads DOPS_REDIS_URL', () => {
    const config = processingConfig.load({
      env: { ...devSecurityEnv('processing'), DOPS_REDIS_URL: 'redis://r:6380' },
    });
    expect(config.grpc.port).toBe(50055);
    expect(config.queue.redisUrl).toBe('redis://r:6380');
    expect(config.queue.prefix).toBe('dops');
  });
});
