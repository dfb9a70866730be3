import { baseServiceConfig } from '@dops/config';
import { devSecuritySettings } from '@dops/security';
import { testWorkerConfig } from '@dops/testing';
import { runWorkerService } from '../src';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('runWorkerService', () => {
  it('starts the workers and the server; a shutdown stops the calls, then the workers', async () => {
    const config = baseServiceConfig.parse({
      grpc: { host: '127.0.0.1', port: 0 },
      logLevel: 'silent',
      telemetry: { serviceName: 'svc-test' },
      metrics: { host: '127.0.0.1', port: 0 },
      worker: testWorkerConfig(),
      security: devSecuritySettings('inference'),
    });
    let telemetryStopped = false;
    const running = await runWorkerService({
      name: 'svc-test',
      config,
      telemetry: { shutdown: async () => void (telemetryStopped = true) },
      services: () => [],
      handleSignals: false,
    });
    const [worker] = running.pool.list();
    expect(worker!.device.id).toBe('cpu:0');
    expect(running.port).toBeGreaterThan(0);
    const pid = worker!.supervisor.health().pid!;
    expect(alive(pid)).toBe(true);

    await running.server.shutdown();
    expect(worker!.supervisor.state).toBe('stopped');
    expect(alive(pid)).toBe(false);
    expect(telemetryStopped).toBe(false); // telemetry belongs to the signal path, which the caller owns here
  }, 90_000);
});
