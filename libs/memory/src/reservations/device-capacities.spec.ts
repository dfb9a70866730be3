import { DopsError } from '@dops/errors';
import { DeviceCapacities } from './device-capacities';

const GIB = 1024 ** 3;

function capacities(lists: (() => { deviceId: string; totalBytes: number }[])[]) {
  let clock = 0;
  let fetches = 0;
  const c = new DeviceCapacities(
    async () => {
      const next = lists[Math.min(fetches, lists.length - 1)]!;
      fetches += 1;
      return next();
    },
    { reservableFraction: 0.5, maxAgeMs: 1_000, now: () => clock },
  );
  return { c, fetches: () => fetches, tick: (ms: number) => (clock += ms) };
}

describe('DeviceCapacities', () => {
  it('knows nothing until a reserve asks for a device, then serves the fraction of its total', async () => {
    const { c, fetches } = capacities([() => [{ deviceId: 'cuda:0', totalBytes: 8 * GIB }]]);
    expect(c.capacityOf('cuda:0')).toBeUndefined();
    await Promise.all([c.prepare('cuda:0'), c.prepare('cuda:0')]);
    expect(fetches()).toBe(1); // concurrent reserves share one fetch
    expect(c.capacityOf('cuda:0')).toBe(4 * GIB);
    await c.prepare('cuda:0');
    expect(fetches()).toBe(1); // fresh: from the cache
    await c.prepare('');
    expect(fetches()).toBe(1); // the ledger refuses an empty id, naming the field
  });

  it('refreshes an old list in the background, and fetches again for a device it does not know', async () => {
    let clock = 0;
    let release: (() => void) | undefined;
    let list = [{ deviceId: 'cuda:0', totalBytes: 8 * GIB }];
    const c = new DeviceCapacities(
      () => (release ? new Promise((resolve) => (release = () => resolve(list))) : Promise.resolve(list)),
      { reservableFraction: 0.5, maxAgeMs: 1_000, now: () => clock },
    );
    await c.prepare('cuda:0');
    clock += 1_001;
    list = [
      { deviceId: 'cuda:0', totalBytes: 6 * GIB },
      { deviceId: 'cuda:1', totalBytes: 2 * GIB },
    ];
    release = () => undefined; // the next fetch hangs until released
    await c.prepare('cuda:0'); // does not wait for it
    expect(c.capacityOf('cuda:0')).toBe(4 * GIB);
    release();
    await c.refresh();
    expect(c.capacityOf('cuda:0')).toBe(3 * GIB);
    release = undefined;
    await c.prepare('cuda:1');
    expect(c.capacityOf('cuda:1')).toBe(1 * GIB);
  });

  it('keeps the last list when a refresh fails; an unknown device gets the failure', async () => {
    const down = () => {
      throw DopsError.unavailable('no memory host answered GetMemory');
    };
    const { c, tick } = capacities([() => [{ deviceId: 'cuda:0', totalBytes: 8 * GIB }], down]);
    await c.prepare('cuda:0');
    tick(5_000);
    await c.prepare('cuda:0');
    await expect(c.prepare('cuda:9')).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    expect(c.capacityOf('cuda:0')).toBe(4 * GIB);
  });
});
