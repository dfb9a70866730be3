import { DopsError } from '@dops/errors';
import { WorkerSupervisor, type InitializeResult, type ProgressParams, type WorkerHeartbeat } from '../src';
import {
  captureLogger,
  processExists,
  realWorkerOptions,
  recordStates,
  sleep,
  waitForState,
} from './helpers';

// Against the real `python -m dops_worker` on CPU. Starting one costs seconds (torch import), so
// the tests that leave the worker as they found it share one.
describe('WorkerSupervisor with the real worker', () => {
  describe('one shared worker', () => {
    const logger = captureLogger();
    const sup = new WorkerSupervisor(realWorkerOptions({ logger, heartbeatIntervalMs: 100 }));
    const states = recordStates(sup);

    beforeAll(() => sup.start());
    afterAll(() => sup.stop());

    it('handshakes: ready with the initialize result of protocol 1 on cpu', () => {
      const health = sup.stats();
      expect(states).toEqual(['starting', 'ready']);
      expect(health).toMatchObject({ state: 'ready', restarts: 0, activeRequests: 0, lastError: undefined });
      const init = health.initializeResult as InitializeResult;
      expect(init).toMatchObject({ protocolVersion: 1, pid: health.pid, backend: 'cpu' });
      expect(init.devices[0]).toMatchObject({ backend: 'cpu', id: 'cpu:0' });
      expect(processExists(health.pid as number)).toBe(true);
    });

    it('runs diagnostics.steps and routes each $/progress to onProgress', async () => {
      const progress: ProgressParams[] = [];
      const result = await sup.request(
        'diagnostics.steps',
        { steps: 5, stepMs: 5 },
        {
          onProgress: (p) => progress.push(p),
          traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
        },
      );
      expect(result).toEqual({ completed: 5 });
      expect(progress.map((p) => [p.step, p.total])).toEqual([
        [1, 5],
        [2, 5],
        [3, 5],
        [4, 5],
        [5, 5],
      ]);
      expect(typeof progress[0].id).toBe('number');
    });

    it('turns a worker error reply into a DopsError with the field that was wrong', async () => {
      const err = (await sup
        .request('diagnostics.steps', { steps: 0, stepMs: 1 })
        .catch((e) => e)) as DopsError;
      expect(err).toBeInstanceOf(DopsError);
      expect(err.code).toBe('INVALID_ARGUMENT');
      expect(err.violations[0].field).toBe('steps');
      const unknown = (await sup.request('no.such.method').catch((e) => e)) as DopsError;
      expect(unknown.code).toBe('UNSUPPORTED');
      expect(sup.stats()).toMatchObject({ state: 'ready', restarts: 0 });
    });

    it('cancels mid-run through an AbortSignal: CANCELLED, and the same worker serves the next request', async () => {
      const pid = sup.stats().pid;
      const controller = new AbortController();
      const steps: number[] = [];
      const running = sup.request(
        'diagnostics.steps',
        { steps: 1000, stepMs: 20 },
        { signal: controller.signal, onProgress: (p) => steps.push(p.step) },
      );
      await waitFor(() => steps.length >= 2);
      const began = Date.now();
      controller.abort();
      const err = (await running.catch((e) => e)) as DopsError;
      expect(err.code).toBe('CANCELLED');
      expect(err.retryable).toBe(false);
      expect(Date.now() - began).toBeLessThan(1_000);
      expect(steps.length).toBeLessThan(1000);
      await expect(sup.request('diagnostics.steps', { steps: 1, stepMs: 0 })).resolves.toEqual({
        completed: 1,
      });
      expect(sup.stats()).toMatchObject({ state: 'ready', pid, restarts: 0 });
    });

    it('rejects at once when the signal is already aborted', async () => {
      await expect(
        sup.request('diagnostics.steps', { steps: 1, stepMs: 0 }, { signal: AbortSignal.abort() }),
      ).rejects.toMatchObject({ code: 'CANCELLED' });
    });

    it('fails DEADLINE_EXCEEDED after the per-request timeout and keeps the worker', async () => {
      const pid = sup.stats().pid;
      const began = Date.now();
      await expect(
        sup.request('diagnostics.steps', { steps: 1000, stepMs: 20 }, { timeoutMs: 300 }),
      ).rejects.toMatchObject({ code: 'DEADLINE_EXCEEDED' });
      expect(Date.now() - began).toBeGreaterThanOrEqual(290);
      expect(Date.now() - began).toBeLessThan(1_500);
      await expect(sup.request('diagnostics.steps', { steps: 1, stepMs: 0 })).resolves.toEqual({
        completed: 1,
      });
      expect(sup.stats()).toMatchObject({ pid, restarts: 0 });
    });

    it('honours an absolute deadline, and refuses one already passed without sending it', async () => {
      const began = Date.now();
      await expect(
        sup.request('diagnostics.steps', { steps: 1000, stepMs: 20 }, { deadline: began + 300 }),
      ).rejects.toMatchObject({ code: 'DEADLINE_EXCEEDED' });
      expect(Date.now() - began).toBeLessThan(1_500);
      await expect(
        sup.request('diagnostics.steps', { steps: 1, stepMs: 0 }, { deadline: Date.now() - 1 }),
      ).rejects.toMatchObject({ code: 'DEADLINE_EXCEEDED' });
      await expect(
        sup.request('diagnostics.steps', { steps: 1, stepMs: 0 }, { deadline: Date.now() + 5_000 }),
      ).resolves.toEqual({ completed: 1 });
    });

    it('pings on the interval and updates lastHeartbeatAt, also while a request runs', async () => {
      const beats: WorkerHeartbeat[] = [];
      sup.on('heartbeat', (b) => beats.push(b));
      const running = sup.request('diagnostics.steps', { steps: 40, stepMs: 20 });
      await waitFor(() => beats.some((b) => b.busy));
      await running;
      const busy = beats.find((b) => b.busy) as WorkerHeartbeat;
      expect(busy).toMatchObject({ pid: sup.stats().pid, activeRequests: 1 });
      expect(sup.stats().lastHeartbeatAt).toBeGreaterThanOrEqual(busy.at);
      expect(sup.stats().lastHeartbeatAt).toBeGreaterThan(Date.now() - 1_000);
    });

    it('re-emits the worker stderr JSON logs through the logger with the worker pid', () => {
      const pid = sup.stats().pid;
      const fromWorker = logger.records.filter((r) => r.fields['workerLogger'] !== undefined);
      expect(fromWorker.length).toBeGreaterThan(0);
      expect(fromWorker[0]).toMatchObject({
        fields: { workerPid: pid, worker: 'worker', component: 'worker-supervisor' },
      });
      expect(String(fromWorker[0].fields['workerLogger'])).toMatch(/^dops_worker/);
    });
  });

  describe('a worker of its own', () => {
    let supervisor: WorkerSupervisor | undefined;

    afterEach(async () => {
      await supervisor?.stop();
      supervisor = undefined;
    });

    async function started(
      overrides: Parameters<typeof realWorkerOptions>[0] = {},
    ): Promise<WorkerSupervisor> {
      supervisor = new WorkerSupervisor(realWorkerOptions(overrides));
      await supervisor.start();
      return supervisor;
    }

    it('stop(): an in-flight request finishes while draining, new ones are refused, then worker.shutdown, exit 0, no process left', async () => {
      const sup = await started();
      const pid = sup.stats().pid as number;
      const states = recordStates(sup);
      const exits: Array<{ code: number | null }> = [];
      sup.on('exit', (e) => exits.push(e));
      const running = sup.request('diagnostics.steps', { steps: 5, stepMs: 20 });
      await sleep(20);
      const stopping = sup.stop();
      expect(sup.state).toBe('draining');
      await expect(sup.request('worker.ping')).rejects.toMatchObject({
        code: 'UNAVAILABLE',
        retryable: true,
      });
      await expect(running).resolves.toEqual({ completed: 5 });
      await stopping;
      expect(states).toEqual(['draining', 'stopped']);
      expect(exits).toEqual([expect.objectContaining({ pid, code: 0, signal: null, reason: undefined })]);
      expect(() => process.kill(pid, 0)).toThrow(expect.objectContaining({ code: 'ESRCH' }));
      await expect(sup.request('worker.ping')).rejects.toMatchObject({
        code: 'UNAVAILABLE',
        retryable: false,
      });
      await expect(sup.stop()).resolves.toBeUndefined();
    });

    it('reset() replaces the child now: new pid, restarts 1, the next request succeeds', async () => {
      const sup = await started();
      const oldPid = sup.stats().pid as number;
      const states = recordStates(sup);
      await sup.reset();
      const health = sup.stats();
      expect(states).toEqual(['starting', 'ready']);
      expect(health).toMatchObject({ state: 'ready', restarts: 1, lastError: undefined });
      expect(health.pid).not.toBe(oldPid);
      await waitFor(() => !processExists(oldPid));
      await expect(sup.request('diagnostics.steps', { steps: 1, stepMs: 0 })).resolves.toEqual({
        completed: 1,
      });
    });

    it('rejects pending requests UNAVAILABLE (retryable) the moment the child is killed, then restarts', async () => {
      const sup = await started();
      const before = sup.stats().restarts;
      const pid = sup.stats().pid as number;
      const running = sup.request('diagnostics.steps', { steps: 1000, stepMs: 20 });
      await sleep(100);
      process.kill(pid, 'SIGKILL');
      const err = (await running.catch((e) => e)) as DopsError;
      expect(err).toMatchObject({ code: 'UNAVAILABLE', retryable: true });
      expect(err.message).toMatch(/exited with signal SIGKILL/);
      await waitForState(sup, 'ready');
      expect(sup.stats()).toMatchObject({
        restarts: before + 1,
        lastError: expect.objectContaining({ code: 'UNAVAILABLE' }),
      });
      await expect(sup.request('diagnostics.steps', { steps: 1, stepMs: 0 })).resolves.toEqual({
        completed: 1,
      });
    });
  });
});

async function waitFor(condition: () => boolean, ms = 10_000): Promise<void> {
  const until = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await sleep(10);
  }
}
