import * as path from 'node:path';
import { resolvePythonExecutable, silentLogger, WorkerSupervisor } from '@dops/worker-supervisor';
import { DeviceLane } from '../src';

// Against the real `python -m dops_worker` on CPU: `diagnostics.steps` with `writeMs` acts as a
// generation whose PNG writes remain (it sends `$/progress {phase: "writing"}` and replies
// `writeMs` later from a timer thread, the worker's execution thread free meanwhile).
const REPO_ROOT = path.resolve(__dirname, '../../../..');
const PYTHON_WORKERS = path.join(REPO_ROOT, 'python-workers');

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('DeviceLane over the real worker', () => {
  const sup = new WorkerSupervisor({
    command: resolvePythonExecutable({ repoRoot: REPO_ROOT }),
    cwd: PYTHON_WORKERS,
    env: { ...process.env, DOPS_BACKEND: 'cpu', PYTHONPATH: path.join(PYTHON_WORKERS, 'src') },
    initializeParams: { backend: 'cpu' },
    logger: silentLogger,
    handshakeTimeoutMs: 30_000,
    readyTimeoutMs: 30_000,
    requestTimeoutMs: 10_000,
    heartbeatIntervalMs: 60_000,
    restartInitialDelayMs: 50,
    restartMaxDelayMs: 200,
  });
  const lane = new DeviceLane(() => sup, { maxBatch: 1, batchWaitMs: 0, maxRequestMs: 10_000 });

  beforeAll(() => sup.start(), 60_000);
  afterAll(() => sup.stop());

  it('sends the next call while the first one writes; both resolve; exclusive work waits for both replies', async () => {
    const events: string[] = [];
    const steps = (name: string, params: Record<string, unknown>) =>
      lane
        .request<{ completed: number }>('diagnostics.steps', params, {
          onProgress: (p) => events.push(`${name} step ${p.step}/${p.total}${p.phase ? ` ${p.phase}` : ''}`),
        })
        .then((r) => {
          events.push(`${name} replied`);
          return r;
        });
    const first = steps('A', { steps: 2, stepMs: 10, writeMs: 800 });
    const second = steps('B', { steps: 2, stepMs: 10, writeMs: 300 });
    await sleep(50);
    const exclusive = lane.exclusive(async () => events.push('exclusive'));
    await expect(Promise.all([first, second])).resolves.toEqual([{ completed: 2 }, { completed: 2 }]);
    await exclusive;
    // B ran (and even replied) while A's writes were still going; no writing frame reached a caller.
    expect(events).toEqual([
      'A step 1/2',
      'A step 2/2',
      'B step 1/2',
      'B step 2/2',
      'B replied',
      'A replied',
      'exclusive',
    ]);
  }, 30_000);

  it('a worker crash with a call writing and one computing rejects both UNAVAILABLE', async () => {
    const first = lane.request('diagnostics.steps', { steps: 1, stepMs: 0, writeMs: 5_000 });
    let computing!: () => void;
    const started = new Promise<void>((resolve) => (computing = resolve));
    const second = lane.request(
      'diagnostics.steps',
      { steps: 100, stepMs: 50 },
      { onProgress: () => computing() },
    );
    await started;
    process.kill(sup.stats().pid as number, 'SIGKILL');
    await expect(first).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    await expect(second).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    // The restarted worker takes the lane's next call.
    await expect(lane.request('diagnostics.steps', { steps: 1, stepMs: 0 })).resolves.toEqual({
      completed: 1,
    });
  }, 60_000);
});
