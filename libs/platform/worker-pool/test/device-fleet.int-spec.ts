import * as path from 'node:path';
import { WorkerPool } from '../src';
import { resolvePythonExecutable } from '@dops/worker-supervisor';
import { DeviceFleet, toProtoDevice, type DeviceChange } from '../src';

// A torch-free worker reporting two devices (libs/platform/worker-pool/test/fixtures), so the
// fleet's scheduling logic is tested over real processes in milliseconds.
const FIXTURE = path.resolve(__dirname, 'fixtures/devices_worker.py');
const silent = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  child: () => silent,
};

describe('DeviceFleet', () => {
  let pool: WorkerPool;
  let fleet: DeviceFleet;
  const changes: DeviceChange[] = [];

  beforeAll(async () => {
    pool = new WorkerPool({
      name: 'fleet-test',
      backend: 'cpu',
      logger: silent,
      supervisor: {
        command: resolvePythonExecutable(),
        args: [FIXTURE],
        env: { ...process.env, FIXTURE_DEVICES: '2' },
      },
    });
    await pool.start();
    fleet = new DeviceFleet(pool);
    fleet.on('change', (c) => changes.push(c));
  }, 30_000);

  afterAll(() => pool.stop());

  it('lists both devices, schedulable and ready', () => {
    const devices = fleet.list();
    expect(devices.map((d) => [d.id, d.scheduling, d.health.workerState])).toEqual([
      ['fixture:0', 'schedulable', 'ready'],
      ['fixture:1', 'schedulable', 'ready'],
    ]);
    expect(fleet.isSchedulable('fixture:0')).toBe(true);
  });

  it('cordons one device only, and says so once per change', () => {
    changes.length = 0;
    fleet.cordon('fixture:1');
    fleet.cordon('fixture:1');
    expect(fleet.isSchedulable('fixture:1')).toBe(false);
    expect(fleet.isSchedulable('fixture:0')).toBe(true);
    expect(changes.filter((c) => c.reason === 'scheduling').map((c) => c.device.id)).toEqual(['fixture:1']);
    fleet.uncordon('fixture:1');
    expect(fleet.isSchedulable('fixture:1')).toBe(true);
  });

  it('drains: waits for the running request, then leaves the device cordoned', async () => {
    const running = pool.get('fixture:0').supervisor.request('diagnostics.steps', { steps: 5, stepMs: 60 });
    const { drained, device } = await fleet.drain('fixture:0', { timeoutMs: 5_000, pollMs: 20 });
    expect(drained).toBe(true);
    expect(device.scheduling).toBe('cordoned');
    await expect(running).resolves.toEqual({ completed: 5 });
    fleet.uncordon('fixture:0');
  });

  it('drains tracked work too (a job between pick-up and its worker request), and says what still runs', async () => {
    let finish!: () => void;
    const job = fleet.track('fixture:1', new Promise<void>((resolve) => (finish = resolve)));
    const short = await fleet.drain('fixture:1', { timeoutMs: 100, pollMs: 20 });
    expect(short).toMatchObject({ drained: false, running: ['workers: 1 job'] });
    expect(fleet.isCordoned('fixture:1')).toBe(true);
    setTimeout(finish, 100);
    const full = await fleet.drain('fixture:1', { timeoutMs: 5_000, pollMs: 20 });
    expect(full).toMatchObject({ drained: true, running: [] });
    await job;
    fleet.uncordon('fixture:1');
  });

  it('waits for an uncordon before new work starts; the wait ends with its signal', async () => {
    fleet.cordon('fixture:0');
    expect(fleet.allCordoned()).toBe(false);
    let started = false;
    const waiting = fleet.waitSchedulable('fixture:0').then(() => (started = true));
    await new Promise((r) => setTimeout(r, 50));
    expect(started).toBe(false);
    fleet.uncordon('fixture:0');
    await waiting;
    expect(started).toBe(true);
    fleet.cordon('fixture:0');
    const aborted = new AbortController();
    const gave = fleet.waitSchedulable('fixture:0', aborted.signal);
    aborted.abort(new Error('gone'));
    await expect(gave).rejects.toThrow('gone');
    fleet.uncordon('fixture:0');
  });

  it('resets after draining: refused while work runs, then the worker restarts and the device is schedulable again', async () => {
    const pid = fleet.get('fixture:0').health.workerPid;
    let finish!: () => void;
    const job = fleet.track('fixture:0', new Promise<void>((resolve) => (finish = resolve)));
    await expect(fleet.reset('fixture:0', { drainTimeoutMs: 100 })).rejects.toMatchObject({
      code: 'FAILED_PRECONDITION',
    });
    expect(fleet.get('fixture:0').health.workerPid).toBe(pid);
    expect(fleet.isCordoned('fixture:0')).toBe(false);
    finish();
    await job;
    const after = await fleet.reset('fixture:0', { drainTimeoutMs: 5_000 });
    expect(after.health.workerPid).not.toBe(pid);
    expect(after.scheduling).toBe('schedulable');
  }, 30_000);

  it('throws NOT_FOUND for an unknown device', () => {
    expect(() => fleet.get('fixture:7')).toThrow(expect.objectContaining({ code: 'NOT_FOUND' }));
    expect(() => fleet.cordon('fixture:7')).toThrow(expect.objectContaining({ code: 'NOT_FOUND' }));
  });

  it('maps a device to its wire form', () => {
    const wire = toProtoDevice(fleet.get('fixture:0'));
    expect(wire).toMatchObject({
      id: 'fixture:0',
      backend: 'BACKEND_CPU',
      scheduling: 'SCHEDULING_STATE_SCHEDULABLE',
    });
    expect(wire.health?.workerState).toBe('WORKER_STATE_READY');
  });
});
