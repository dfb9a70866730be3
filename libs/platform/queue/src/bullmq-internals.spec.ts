import { readFileSync } from 'node:fs';
import { Queue } from 'bullmq';
import { BULLMQ_INTERNALS_VERSION, jobsAhead } from './bullmq-internals';
import { connectionOptions, createRedis, type Redis } from './connection';
import { startTestRedis, type TestRedis } from './test-redis';

let redis: TestRedis;
let client: Redis;

beforeAll(async () => {
  redis = await startTestRedis();
  client = createRedis(redis.url);
});
afterAll(async () => {
  client.disconnect();
  await redis.stop();
});

describe('BullMQ internal keys', () => {
  it('are read from the BullMQ version they were checked against (upgrade: re-check this file)', () => {
    const pkg = JSON.parse(readFileSync(require.resolve('bullmq/package.json'), 'utf8')) as {
      version: string;
    };
    expect(pkg.version).toBe(BULLMQ_INTERNALS_VERSION);
  });

  it('count the jobs ahead: plain waiting jobs first, then prioritized ones in priority order', async () => {
    const prefix = `bi${process.pid}`;
    const queue = new Queue('q', { connection: connectionOptions(redis.url), prefix });
    try {
      await queue.add('plain', {}, { jobId: 'plain' });
      await queue.add('low', {}, { jobId: 'low', priority: 50 });
      await queue.add('high', {}, { jobId: 'high', priority: 5 });
      expect(await jobsAhead(client, prefix, 'q', 'high')).toBe(1);
      expect(await jobsAhead(client, prefix, 'q', 'low')).toBe(2);
      // Not prioritized (or gone): behind every plain waiting job.
      expect(await jobsAhead(client, prefix, 'q', 'missing')).toBe(1);
    } finally {
      await queue.obliterate({ force: true });
      await queue.close();
    }
  });
});
