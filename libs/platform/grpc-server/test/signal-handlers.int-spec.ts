import { installSignalHandlers } from '../src/index';
import { startFixtureServer } from './device-fixture';

describe('installSignalHandlers', () => {
  it('shuts the server down gracefully on SIGTERM, runs the hooks, then exits 0', async () => {
    const fixture = await startFixtureServer();
    const order: string[] = [];
    const exited = new Promise<number>((resolve) => {
      const remove = installSignalHandlers(fixture.server, {
        hooks: [() => void order.push(`hook (server ${fixture.server.state})`)],
        exit: (code) => {
          remove();
          resolve(code);
        },
      });
    });
    process.emit('SIGTERM', 'SIGTERM');
    await expect(exited).resolves.toBe(0);
    expect(order).toEqual(['hook (server stopped)']);
  });

  it('exits 1 at the deadline when a hook never finishes (a Redis that is down)', async () => {
    const fixture = await startFixtureServer();
    const started = Date.now();
    const exited = new Promise<number>((resolve) => {
      const remove = installSignalHandlers(fixture.server, {
        hooks: [() => new Promise<void>(() => undefined)],
        deadlineMs: 300,
        exit: (code) => {
          remove();
          resolve(code);
        },
      });
    });
    process.emit('SIGTERM', 'SIGTERM');
    await expect(exited).resolves.toBe(1);
    expect(fixture.server.state).toBe('stopped');
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
  });
});
