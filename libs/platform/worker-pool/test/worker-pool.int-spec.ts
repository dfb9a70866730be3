import * as path from 'node:path';
import { resolvePythonExecutable } from '@dops/worker-supervisor';
import { parseDeviceId, reportWorkerHealth, WorkerPool } from '../src';

const FIXTURE = path.join(__dirname, 'fixtures', 'devices_worker.py');

function pool(devices: number, extra: { crashLoopLimit?: number } = {}): WorkerPool {
  return new WorkerPool({
    name: 'pool-test',
    backend: 'cpu',
    logger: {
      debug: () => undefined,
      info: () => undefined,
      warn: () => undefined,
      error: () => undefined,
      child: () => silent,
    },
    supervisor: {
      command: resolvePythonExecutable(),
      args: [FIXTURE],
      env: { ...process.env, FIXTURE_DEVICES: String(devices) },
      restartInitialDelayMs: 20,
      ...extra,
    },
  });
}
const silent = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  child: () => silent,
};

describe('WorkerPool', () => {
  it('starts one worker per device the first worker reports, each bound to its index', async () => {
    const p = pool(3);
    try {
      await p.start();
      const workers = p.list();
      expect(workers.map((w) => w.device.id)).toEqual(['fixture:0', 'fixture:1', 'fixture:2']);
      const pids = new Set(workers.map((w) => w.supervisor.health().pid));
      expect(pids.size).toBe(3);
      expect(p.get('fixture:1').device.index).toBe(1);
      expect(() => p.get('fixture:9')).toThrow(expect.objectContaining({ code: 'NOT_FOUND' }));
    } finally {
      await p.stop();
    }
  }, 30_000);

  it("logs every worker's supervisor through the pool's logger when the supervisor names none", async () => {
    const messages: string[] = [];
    const capture = {
      debug: () => undefined,
      info: (_fields: object, msg?: string) => void messages.push(msg ?? ''),
      warn: () => undefined,
      error: () => undefined,
      child: () => capture,
    };
    const p = new WorkerPool({
      name: 'pool-log-test',
      backend: 'cpu',
      logger: capture,
      supervisor: {
        command: resolvePythonExecutable(),
        args: [FIXTURE],
        env: { ...process.env, FIXTURE_DEVICES: '2' },
      },
    });
    try {
      await p.start();
      expect(messages.filter((m) => m === 'worker ready')).toHaveLength(2);
    } finally {
      await p.stop();
    }
  }, 30_000);

  it('reports NOT_SERVING once a worker crash-loops, SERVING again after reset', async () => {
    const p = pool(1, { crashLoopLimit: 0 });
    const states: boolean[] = [];
    try {
      await p.start();
      reportWorkerHealth(p, { setServing: (_s, serving) => states.push(serving) }, 'svc');
      expect(states).toEqual([true]);
      const worker = p.get('fixture:0').supervisor;
      process.kill(worker.health().pid!, 'SIGKILL');
      await new Promise<void>((resolve) => worker.on('state', (s) => s === 'failed' && resolve()));
      expect(states.at(-1)).toBe(false);
      await worker.reset();
      expect(states.at(-1)).toBe(true);
    } finally {
      await p.stop();
    }
  }, 30_000);
});

describe('parseDeviceId', () => {
  it('accepts device ids and names the field for anything else', () => {
    expect(parseDeviceId('pci:0000:01:00.0')).toBe('pci:0000:01:00.0');
    expect(() => parseDeviceId('', 'params.device_id')).toThrow('params.device_id: is required');
    expect(() => parseDeviceId('../x')).toThrow(/device_id: '..\/x' is not a device id/);
  });
});
