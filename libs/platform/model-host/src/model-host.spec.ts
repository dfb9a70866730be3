import type { WorkerPool } from '@dops/worker-pool';
import { ModelHost } from './model-host';

/** A pool of one worker whose `model.load` requests are recorded, not run. */
function recordingPool() {
  const requests: { method: string; params: Record<string, unknown> }[] = [];
  const supervisor = {
    request: async (method: string, params: Record<string, unknown>) => {
      requests.push({ method, params });
      return { modelId: params.modelId, tier: params.tier, bytes: 1, source: 'disk', timings: {} };
    },
  };
  const pool = { get: () => ({ supervisor }) } as unknown as WorkerPool;
  return { pool, requests };
}

describe('ModelHost.load', () => {
  const sha256 = 'AB'.repeat(32);

  it('passes the registry sha256 to model.load, lower case, and leaves it out when there is none', async () => {
    const { pool, requests } = recordingPool();
    const host = new ModelHost(pool);
    await host.load('m', '/models/a.safetensors', 'cpu:0', 'vram', { sha256, configDir: '/cfg' });
    await host.load('m', '/models/a.safetensors', 'cpu:0', 'vram');
    expect(requests).toEqual([
      {
        method: 'model.load',
        params: {
          modelId: 'm',
          path: '/models/a.safetensors',
          tier: 'vram',
          configDir: '/cfg',
          sha256: 'ab'.repeat(32),
        },
      },
      { method: 'model.load', params: { modelId: 'm', path: '/models/a.safetensors', tier: 'vram' } },
    ]);
  });

  it('refuses a sha256 that is not 64 hex digits, naming it, before asking the worker', async () => {
    const { pool, requests } = recordingPool();
    await expect(
      new ModelHost(pool).load('m', '/models/a.safetensors', 'cpu:0', 'ram', { sha256: 'abc' }),
    ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', violations: [{ field: 'sha256' }] });
    expect(requests).toEqual([]);
  });
});
