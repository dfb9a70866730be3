import * as path from 'node:path';
import { WorkerPool } from '@dops/worker-pool';
import { resolvePythonExecutable } from '@dops/worker-supervisor';
import { DeviceFleet, toProtoDevice, type DeviceChange } from '../src';

// A torch-free worker reporting two devices (libs/platform/worker-pool/test/fixtures), so the
// fleet's scheduling logic is tested over real processes in milliseconds.
const FIXTURE = path.resolve(__dirname, '../../platform/worker-pool/test/fixtures/devices_worker.py');
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
