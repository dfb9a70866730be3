import { RestartPolicy } from './restart-policy';

const options = {
  initialDelayMs: 100,
  maxDelayMs: 1000,
  multiplier: 2,
  jitter: 0.5,
  limit: 3,
  windowMs: 10_000,
  stableStartMs: 5_000,
};

describe('RestartPolicy', () => {
  it('backs off exponentially up to the maximum, minus jitter', () => {
    const noJitter = new RestartPolicy({ ...options, limit: 100 }, () => 0);
    const delays = [1, 2, 3, 4, 5]
      .map((i) => noJitter.recordCrash(i, 0))
      .map((d) => (d.restart ? d.delayMs : -1));
    expect(delays).toEqual([100, 200, 400, 800, 1000]);
    const fullJitter = new RestartPolicy(options, () => 1);
    expect(fullJitter.recordCrash(0, 0)).toEqual({ restart: true, delayMs: 50, crashesInWindow: 1 });
  });

  it('gives up after `limit` crashes within the window', () => {
    const p = new RestartPolicy(options, () => 0);
    expect([0, 1, 2].map((t) => p.recordCrash(t, 0).restart)).toEqual([true, true, true]);
    expect(p.recordCrash(3, 0)).toEqual({ restart: false, crashesInWindow: 4 });
  });

  it('forgets crashes outside the window and after a stable start', () => {
    const p = new RestartPolicy(options, () => 0);
    [0, 1, 2].forEach((t) => p.recordCrash(t, 0));
    expect(p.recordCrash(10_001, 0)).toMatchObject({ restart: true, crashesInWindow: 2 });
    expect(p.recordCrash(10_002, 5_000)).toEqual({ restart: true, delayMs: 100, crashesInWindow: 1 });
    p.clear();
    expect(p.recordCrash(10_003, 0)).toEqual({ restart: true, delayMs: 100, crashesInWindow: 1 });
  });
});
