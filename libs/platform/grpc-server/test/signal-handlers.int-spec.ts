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
});
