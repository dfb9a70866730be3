import { devSecurityEnv } from '@dops/security';
import { splitHostList } from '@dops/memory';
import { memoryConfig } from '../src/config';

describe('memory config', () => {
  it('asks the inference and postprocessing services of this node by default', () => {
    const config = memoryConfig.load({ env: devSecurityEnv('memory') });
    expect(config.grpc.port).toBe(50052);
    expect(splitHostList(config.memory.hosts)).toEqual(['127.0.0.1:50054', '127.0.0.1:50056']);
  });

  it('reads DOPS_MEMORY_HOSTS as a comma-separated host:port list and refuses anything else', () => {
    const hosts = 'inference:50054, postprocessing:50056,[::1]:50057';
    const config = memoryConfig.load({ env: { ...devSecurityEnv('memory'), DOPS_MEMORY_HOSTS: hosts } });
    expect(splitHostList(config.memory.hosts)).toEqual([
      'inference:50054',
      'postprocessing:50056',
      '[::1]:50057',
    ]);
    for (const bad of ['inference', 'inference:50054,', 'http://inference:50054'])
      expect(() =>
        memoryConfig.load({ env: { ...devSecurityEnv('memory'), DOPS_MEMORY_HOSTS: bad } }),
      ).toThrow(/DOPS_MEMORY_HOSTS/);
  });
});
