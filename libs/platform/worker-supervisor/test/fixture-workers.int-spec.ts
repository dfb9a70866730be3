import { DopsError } from '@dops/errors';
import { WorkerSupervisor, type WorkerExit, type WorkerState, type WorkerSupervisorOptions } from '../src';
import { fixtureOptions, processExists, recordStates, sleep, waitForState } from './helpers';

// Deliberately broken workers (python-workers/tests/fixtures, or this project's test/fixtures):
// each test pins the supervisor's exact reaction.
describe('WorkerSupervisor with broken fixture workers', () => {
  let supervisor: WorkerSupervisor | undefined;

  afterEach(async () => {
    await supervisor?.stop();
    supervisor = undefined;
  });

  function supervise(
    fixture: string,
    overrides: Partial<WorkerSupervisorOptions> = {},
  ): { sup: WorkerSupervisor; exits: WorkerExit[]; states: WorkerState[] } {
    const sup = new WorkerSupervisor(fixtureOptions(fixture, overrides));
    supervisor = sup;
    const exits: WorkerExit[] = [];
    sup.on('exit', (e) => exits.push(e));
    return { sup, exits, states: recordStates(sup) };
  }

  it('crash mid-request: pending request UNAVAILABLE retryable, crashed → starting → ready, restarts 1, next request succeeds', async () => {
    const { sup, states, exits } = supervise('crash_mid_request');
    await sup.start();
    const oldPid = sup.stats().pid;
    const progress: number[] = [];
    const err = (await sup
      .request('diagnostics.steps', { steps: 10, stepMs: 1 }, { onProgress: (p) => progress.push(p.step) })
      .catch((e) => e)) as DopsError;
    expect(progress).toEqual([1]);
    expect(err).toBeInstanceOf(DopsError);
    expect(err).toMatchObject({ code: 'UNAVAILABLE', retryable: true });
    expect(err.message).toMatch(/exited with code 3/);
    expect(exits).toEqual([expect.objectContaining({ pid: oldPid, code: 3, reason: undefined })]);
    await waitForState(sup, 'ready');
    expect(states).toEqual(['starting', 'ready', 'crashed', 'starting', 'ready']);
    expect(sup.stats()).toMatchObject({
      restarts: 1,
      lastError: expect.objectContaining({ code: 'UNAVAILABLE' }),
    });
    expect(sup.stats().pid).not.toBe(oldPid);
    // this fixture dies on every diagnostics.steps; anything else is served by the new child
    await expect(sup.request('worker.ping')).resolves.toMatchObject({ pid: sup.stats().pid });
  });

  it('exit at once: every start crashes, crash-loop limit → failed, no more spawns until reset()', async () => {
    const { sup, exits, states } = supervise('exit_at_once', {
      crashLoopLimit: 2,
      restartInitialDelayMs: 20,
    });
    await expect(sup.start()).rejects.toMatchObject({ code: 'UNAVAILABLE', retryable: false });
    expect(sup.state).toBe('failed');
    expect(exits.map((e) => e.code)).toEqual([1, 1, 1]);
    expect(states).toEqual(['starting', 'crashed', 'starting', 'crashed', 'starting', 'crashed', 'failed']);
    await sleep(300);
    expect(exits).toHaveLength(3);
    expect(sup.stats()).toMatchObject({ state: 'failed', restarts: 2, pid: undefined });
    await expect(sup.request('worker.ping')).rejects.toMatchObject({ code: 'UNAVAILABLE', retryable: false });
    await expect(sup.start()).rejects.toMatchObject({ code: 'FAILED_PRECONDITION' });
    // reset() clears the counter and tries again: three more spawns, failed again
    await expect(sup.reset()).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    expect(exits).toHaveLength(6);
    expect(sup.state).toBe('failed');
  });

  it('fail init: the child is killed, never reused, and counts toward the crash-loop limit', async () => {
    const { sup, exits } = supervise('fail_init', { crashLoopLimit: 1, restartInitialDelayMs: 20 });
    await expect(sup.start()).rejects.toMatchObject({ code: 'UNAVAILABLE', retryable: false });
    expect(sup.state).toBe('failed');
    expect(exits).toHaveLength(2);
    for (const exit of exits) {
      expect(exit.signal).toBe('SIGKILL');
      expect(exit.reason?.message).toMatch(/initialize failed: backend cuda is not usable/);
      expect(processExists(exit.pid as number)).toBe(false);
    }
    expect(sup.stats().lastError?.message).toMatch(/backend cuda is not usable/);
  });

  it('handshake timeout: a worker that never answers initialize is killed after handshakeTimeoutMs', async () => {
    const { sup, exits } = supervise('hang', {
      args: ['-c', 'import time; time.sleep(60)'],
      handshakeTimeoutMs: 200,
      crashLoopLimit: 0,
    });
    const began = Date.now();
    await expect(sup.start()).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    expect(Date.now() - began).toBeLessThan(2_000);
    expect(exits[0].reason?.message).toMatch(/did not answer initialize within 200 ms/);
    expect(sup.state).toBe('failed');
  });

  it('hang: heartbeatMisses unanswered pings → kill, pending request UNAVAILABLE, restart', async () => {
    const { sup, exits } = supervise('hang', { heartbeatIntervalMs: 100, heartbeatMisses: 3 });
    await sup.start();
    const oldPid = sup.stats().pid;
    const began = Date.now();
    const err = (await sup
      .request('diagnostics.steps', { steps: 1, stepMs: 0 })
      .catch((e) => e)) as DopsError;
    expect(err).toMatchObject({ code: 'UNAVAILABLE', retryable: true });
    expect(err.message).toMatch(/missed 3 heartbeats/);
    expect(Date.now() - began).toBeLessThan(1_500);
    expect(exits[0]).toMatchObject({ pid: oldPid, signal: 'SIGKILL' });
    await waitForState(sup, 'ready');
    expect(sup.stats().restarts).toBe(1);
    expect(sup.stats().pid).not.toBe(oldPid);
  });

  it('ignore cancel: killed cancelGraceMs after $/cancelRequest, the request fails CANCELLED, the next succeeds on a new worker', async () => {
    const { sup, exits } = supervise('ignore_cancel', { cancelGraceMs: 300 });
    await sup.start();
    const oldPid = sup.stats().pid;
    const controller = new AbortController();
    const running = sup.request(
      'diagnostics.steps',
      { steps: 1000, stepMs: 10 },
      { signal: controller.signal },
    );
    await sleep(50);
    const began = Date.now();
    controller.abort();
    const err = (await running.catch((e) => e)) as DopsError;
    const waited = Date.now() - began;
    expect(err).toMatchObject({ code: 'CANCELLED', retryable: false });
    expect(waited).toBeGreaterThanOrEqual(290);
    expect(waited).toBeLessThan(1_000);
    expect(exits[0]).toMatchObject({ pid: oldPid, signal: 'SIGKILL' });
    expect(exits[0].reason?.message).toMatch(/did not answer \$\/cancelRequest/);
    await expect(sup.request('diagnostics.steps', { steps: 2, stepMs: 1 })).resolves.toEqual({
      completed: 2,
    });
    expect(sup.stats()).toMatchObject({ state: 'ready', restarts: 1 });
    expect(sup.stats().pid).not.toBe(oldPid);
  });

  it('ignore cancel: a per-request timeout ends the same way, DEADLINE_EXCEEDED', async () => {
    const { sup } = supervise('ignore_cancel', { cancelGraceMs: 200 });
    await sup.start();
    await expect(
      sup.request('diagnostics.steps', { steps: 1000, stepMs: 10 }, { timeoutMs: 200 }),
    ).rejects.toMatchObject({ code: 'DEADLINE_EXCEEDED' });
    await expect(sup.request('diagnostics.steps', { steps: 1, stepMs: 0 })).resolves.toEqual({
      completed: 1,
    });
    expect(sup.stats().restarts).toBe(1);
  });

  it('garbage on stdout right after initialize: protocol error → kill, every time → crash-loop limit → failed', async () => {
    const { sup, exits, states } = supervise('garbage_stdout', {
      crashLoopLimit: 1,
      restartInitialDelayMs: 20,
    });
    // the garbage may come in the same chunk as the initialize reply (never ready) or just after
    // it (ready for a moment): either way the child is killed and the crash counted
    await sup.start().catch(() => undefined);
    await waitForState(sup, 'failed');
    expect(states.filter((s) => s === 'crashed')).toHaveLength(2);
    expect(exits).toHaveLength(2);
    for (const exit of exits) {
      expect(exit.signal).toBe('SIGKILL');
      expect(exit.reason?.message).toMatch(
        /protocol error: frame is not JSON: "this is not JSON: a library printed to stdout"/,
      );
    }
    expect(sup.stats()).toMatchObject({ state: 'failed', restarts: 1 });
    expect(sup.stats().lastError?.metadata['reason']).toBe('PROTOCOL_ERROR');
    await expect(sup.request('worker.ping')).rejects.toMatchObject({ code: 'UNAVAILABLE', retryable: false });
  });

  it('garbage on stdout mid-session: protocol error → kill, every pending request UNAVAILABLE, restart', async () => {
    const { sup, exits } = supervise('garbage_mid_request');
    await sup.start();
    const bystander = sup.request('diagnostics.steps', { steps: 100, stepMs: 10 });
    const err = (await sup.request('fixture.garbage').catch((e) => e)) as DopsError;
    expect(err).toMatchObject({ code: 'UNAVAILABLE', retryable: true });
    expect(err.message).toMatch(/protocol error: frame is not JSON: "Loading weights... 100%"/);
    await expect(bystander).rejects.toMatchObject({ code: 'UNAVAILABLE', retryable: true });
    await waitForState(sup, 'ready');
    expect(exits[0].signal).toBe('SIGKILL');
    expect(sup.stats().restarts).toBe(1);
    await expect(sup.request('diagnostics.steps', { steps: 1, stepMs: 0 })).resolves.toEqual({
      completed: 1,
    });
  });

  it('oversized reply (20 MiB against the default 16 MiB limit): protocol error → restart, request UNAVAILABLE', async () => {
    const { sup, exits } = supervise('oversized_reply', { heartbeatIntervalMs: 60_000 });
    await sup.start();
    const err = (await sup
      .request('diagnostics.steps', { steps: 1, stepMs: 0 })
      .catch((e) => e)) as DopsError;
    expect(err).toMatchObject({ code: 'UNAVAILABLE', retryable: true });
    expect(err.message).toMatch(/exceeds the 16777216-byte limit/);
    await waitForState(sup, 'crashed');
    await waitForState(sup, 'ready');
    expect(exits[0].signal).toBe('SIGKILL');
    expect(sup.stats().restarts).toBe(1);
  });

  it('stop() on a worker that ignores shutdown, stdin EOF and SIGTERM escalates to SIGKILL of the group', async () => {
    const { sup, exits } = supervise('hang', {
      shutdownTimeoutMs: 200,
      stdinCloseTimeoutMs: 200,
      sigtermTimeoutMs: 200,
      heartbeatIntervalMs: 60_000,
    });
    await sup.start();
    const pid = sup.stats().pid as number;
    const began = Date.now();
    await sup.stop();
    expect(Date.now() - began).toBeGreaterThanOrEqual(550);
    expect(Date.now() - began).toBeLessThan(2_000);
    expect(exits).toEqual([expect.objectContaining({ pid, signal: 'SIGKILL' })]);
    expect(() => process.kill(pid, 0)).toThrow(expect.objectContaining({ code: 'ESRCH' }));
    expect(sup.state).toBe('stopped');
  });

  it('refuses to send a request frame over maxFrameBytes: INVALID_ARGUMENT, worker kept', async () => {
    const { sup } = supervise('ignore_cancel', { maxFrameBytes: 1024 });
    await sup.start();
    await expect(sup.request('diagnostics.steps', { pad: 'x'.repeat(2048) })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      violations: [expect.objectContaining({ field: 'params' })],
    });
    expect(sup.stats()).toMatchObject({ state: 'ready', restarts: 0 });
  });

  it('fatal reply: delivered to the caller as the worker error, then the worker is restarted', async () => {
    const { sup, exits } = supervise('fatal_error');
    await sup.start();
    const err = (await sup.request('fixture.fatal').catch((e) => e)) as DopsError;
    expect(err).toMatchObject({
      code: 'UNAVAILABLE',
      message: 'device lost',
      metadata: expect.objectContaining({ fatal: 'true' }),
    });
    await waitForState(sup, 'crashed');
    await waitForState(sup, 'ready');
    expect(exits[0].reason?.message).toMatch(/fatal error: device lost/);
    expect(sup.stats().restarts).toBe(1);
  });

  it('requests made while starting wait for ready', async () => {
    const { sup } = supervise('ignore_cancel');
    void sup.start();
    expect(sup.state).toBe('starting');
    await expect(sup.request('diagnostics.steps', { steps: 1, stepMs: 0 })).resolves.toEqual({
      completed: 1,
    });
  });

  it('requests made while crash-looping fail UNAVAILABLE within readyTimeoutMs', async () => {
    const { sup } = supervise('exit_at_once', {
      crashLoopLimit: 100,
      restartInitialDelayMs: 50,
      restartMaxDelayMs: 50,
      readyTimeoutMs: 300,
    });
    void sup.start().catch(() => undefined);
    const began = Date.now();
    await expect(sup.request('worker.ping')).rejects.toMatchObject({
      code: 'UNAVAILABLE',
      retryable: true,
      message: expect.stringMatching(/not ready within 300 ms/),
    });
    expect(Date.now() - began).toBeLessThan(1_000);
  });
});
