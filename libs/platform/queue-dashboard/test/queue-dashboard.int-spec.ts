import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { startTestRedis, type TestRedis } from '@dops/queue';
import { devSecuritySettings, devToken } from '@dops/security';
import { Queue } from 'bullmq';
import { startQueueDashboard, type QueueDashboard } from '../src';

interface Reply {
  status: number;
  body: string;
}

/** One HTTPS request that trusts only the development CA. */
function call(port: number, path: string, options: { token?: string; method?: string } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: options.method ?? 'GET',
        ca: readFileSync(devSecuritySettings().caFile),
        servername: 'localhost',
        headers: options.token ? { authorization: `Bearer ${options.token}` } : {},
      },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('queue dashboard', () => {
  let redis: TestRedis;
  let dashboard: QueueDashboard;
  let queue: Queue;
  const prefix = `dash-${process.pid}`;

  beforeAll(async () => {
    redis = await startTestRedis();
    queue = new Queue('postprocessing', { connection: { url: redis.url }, prefix });
    await queue.add('stage', { jobId: 'j1' }, { jobId: 'j1.safety' });
    await queue.pause();
    dashboard = await startQueueDashboard({
      redisUrl: redis.url,
      prefix,
      security: devSecuritySettings('processing'),
      host: '127.0.0.1',
      port: 0,
    });
  });
  afterAll(async () => {
    await dashboard?.close();
    await queue?.close();
    await redis?.stop();
  });

  it('answers 401 without a valid token and 403 for a client token', async () => {
    const none = await call(dashboard.port, '/queues/api/queues');
    expect(none.status).toBe(401);
    expect((await call(dashboard.port, '/queues/api/queues', { token: 'x'.repeat(32) })).status).toBe(401);
    const client = await call(dashboard.port, '/queues/api/queues', { token: devToken('demo') });
    expect(client.status).toBe(403);
    expect(client.body).not.toContain('postprocessing');
  });

  it('lists the queues and their jobs to an operator, over HTTPS', async () => {
    const page = await call(dashboard.port, '/queues', { token: devToken('ops') });
    expect(page.status).toBe(200);
    expect(page.body).toContain('<html');
    const api = await call(dashboard.port, '/queues/api/queues?activeQueue=postprocessing&status=waiting', {
      token: devToken('ops'),
    });
    expect(api.status).toBe(200);
    const { queues } = JSON.parse(api.body) as {
      queues: { name: string; readOnlyMode: boolean; counts: Record<string, number> }[];
    };
    expect(queues.map((q) => q.name).sort()).toEqual(['inference', 'postprocessing']);
    const pp = queues.find((q) => q.name === 'postprocessing')!;
    expect(pp.readOnlyMode).toBe(true);
    expect(pp.counts['waiting']).toBe(1);
  });

  it('refuses every mutating call of an operator; the job stays as it was', async () => {
    const ops = devToken('ops');
    const attempts = [
      ['PUT', '/queues/api/queues/postprocessing/resume'],
      ['PUT', '/queues/api/queues/resume'],
      ['PUT', '/queues/api/queues/postprocessing/j1.safety/promote'],
      ['DELETE', '/queues/api/queues/postprocessing/j1.safety'],
      ['PUT', '/queues/api/queues/postprocessing/clean/paused'],
      ['POST', '/queues/api/metrics/history/purge'],
    ] as const;
    for (const [method, path] of attempts) {
      const reply = await call(dashboard.port, path, { token: ops, method });
      expect({ method, path, status: reply.status }).toEqual({ method, path, status: 405 });
    }
    expect(await queue.isPaused()).toBe(true);
    expect(await queue.getJobState('j1.safety')).toBe('waiting');
  });
});
