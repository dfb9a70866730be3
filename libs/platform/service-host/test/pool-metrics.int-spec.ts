import { baseServiceConfig } from '@dops/config';
import { sampleValue } from '@dops/metrics';
import { devSecuritySettings } from '@dops/security';
import { testWorkerConfig, waitFor } from '@dops/testing';
import { runWorkerService } from '../src';

describe("a worker service's /metrics", () => {
  it('reports device memory from the worker and counts a crash restart', async () => {
    const config = baseServiceConfig.parse({
      grpc: { host: '127.0.0.1', port: 0 },
      metrics: { host: '127.0.0.1', port: 0 },
      logLevel: 'silent',
      telemetry: { serviceName: 'svc-metrics' },
      worker: testWorkerConfig(),
      security: devSecuritySettings('inference'),
    });
    const running = await runWorkerService({
      name: 'svc-metrics',
      config,
      telemetry: { shutdown: async () => undefined },
      services: () => [],
      handleSignals: false,
    });
    try {
      const scrape = async () => (await fetch(`http://127.0.0.1:${running.metricsPort}/metrics`)).text();
      let text = await scrape();
      expect(
        sampleValue(text, 'dops_device_memory_bytes', { device: 'cpu:0', kind: 'total' }),
      ).toBeGreaterThan(0);
      expect(sampleValue(text, 'dops_worker_restarts_total', { device: 'cpu:0' })).toBe(0);

      const worker = running.pool.list()[0]!;
      const pid = worker.supervisor.health().pid!;
      process.kill(pid, 'SIGKILL');
      await waitFor(() => worker.supervisor.state === 'ready' && worker.supervisor.health().pid !== pid, {
        timeoutMs: 60_000,
        description: 'the worker restarted',
      });
      text = await scrape();
      expect(
        sampleValue(text, 'dops_worker_restarts_total', { device: 'cpu:0', service: 'svc-metrics' }),
      ).toBe(1);
    } finally {
      await running.server.shutdown();
    }
  }, 120_000);
});
