import { DopsMetrics, sampleValue, startMetricsServer, type MetricsServer } from './index';

describe('metrics endpoint', () => {
  let metrics: DopsMetrics;
  let server: MetricsServer;
  beforeEach(async () => {
    metrics = new DopsMetrics();
    server = await startMetricsServer({
      registry: metrics.registry,
      host: '127.0.0.1',
      port: 0,
      labels: { service: 'test' },
    });
  });
  afterEach(() => server.close());

  const get = (path: string, method = 'GET') => fetch(`http://127.0.0.1:${server.port}${path}`, { method });
  const scrape = async () => (await get('/metrics')).text();

  it('serves the text format with the service label, default process metrics and dops metrics', async () => {
    metrics.jobsFinished.inc({ state: 'failed', code: 'OUT_OF_MEMORY' });
    metrics.images.inc({ stage: 'generate' }, 4);
    metrics.stageQueueWait.observe({ queue: 'inference', stage: 'generate' }, 0.2);
    const res = await get('/metrics');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    const service = 'test';
    expect(
      sampleValue(text, 'dops_jobs_finished_total', { state: 'failed', code: 'OUT_OF_MEMORY', service }),
    ).toBe(1);
    expect(sampleValue(text, 'dops_images_total', { stage: 'generate', service })).toBe(4);
    const wait = { queue: 'inference', stage: 'generate', service };
    expect(sampleValue(text, 'dops_stage_queue_wait_seconds_count', wait)).toBe(1);
    expect(sampleValue(text, 'dops_stage_queue_wait_seconds_bucket', { ...wait, le: '0.1' })).toBe(0);
    expect(sampleValue(text, 'dops_stage_queue_wait_seconds_bucket', { ...wait, le: '0.25' })).toBe(1);
    expect(sampleValue(text, 'process_cpu_user_seconds_total', { service })).toBeGreaterThan(0);
  });

  it('reads scrape-time sources each scrape; a failing source drops only its own series', async () => {
    let waiting = 3;
    metrics.addQueueSource(() => [{ queue: 'inference', counts: { waiting, active: 1 } }]);
    metrics.addQueueSource(() => Promise.reject(new Error('redis down')));
    metrics.addDeviceMemorySource(() => [
      { device: 'cuda:0', totalBytes: 100, usedBytes: 40, freeBytes: 60 },
    ]);
    metrics.addWorkerRestartSource(() => [{ worker: 'inference-cuda:0', device: 'cuda:0', restarts: 2 }]);
    let text = await scrape();
    expect(sampleValue(text, 'dops_queue_jobs', { queue: 'inference', state: 'waiting' })).toBe(3);
    expect(sampleValue(text, 'dops_queue_jobs', { queue: 'inference', state: 'active' })).toBe(1);
    expect(sampleValue(text, 'dops_device_memory_bytes', { device: 'cuda:0', kind: 'free' })).toBe(60);
    expect(sampleValue(text, 'dops_worker_restarts_total', { worker: 'inference-cuda:0' })).toBe(2);
    waiting = 0;
    text = await scrape();
    expect(sampleValue(text, 'dops_queue_jobs', { queue: 'inference', state: 'waiting' })).toBe(0);
  });

  it('answers 404 off /metrics and 405 for other methods', async () => {
    expect((await get('/')).status).toBe(404);
    expect((await get('/metrics', 'POST')).status).toBe(405);
  });

  it('binds loopback unless told otherwise (the endpoint is plaintext and unauthenticated)', async () => {
    const local = await startMetricsServer({ registry: new DopsMetrics().registry, port: 0 });
    try {
      expect(local.address).toBe('127.0.0.1');
    } finally {
      await local.close();
    }
  });
});
