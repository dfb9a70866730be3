// JobStore against a real Redis: optimistic updates from concurrent callers of one process.
import { Transactions, createRedis, startTestRedis, type Redis, type TestRedis } from '@dops/queue';
import { processingV1 } from '@dops/proto';
import { JobStore } from '../src/job-store';
import type { JobRecord } from '../src/job-record';
import { Keys } from '../src/keys';

let server: TestRedis;
let redis: Redis;
let n = 0;

beforeAll(async () => {
  server = await startTestRedis();
  redis = createRedis(server.url);
});

afterAll(async () => {
  redis.disconnect();
  await server.stop();
});

function record(id: string): JobRecord {
  const now = Date.now();
  return {
    id,
    state: 'RUNNING',
    template: 'txt2img',
    clientId: 'alice',
    priority: processingV1.Priority.NORMAL,
    stage: 'generate',
    plan: [],
    createdAt: now,
    updatedAt: now,
    deadlineAt: now + 60_000,
    budgetMs: 60_000,
    images: [],
    outputs: [],
    runs: 1,
    held: false,
    counted: false,
  };
}

async function storeWithJob(): Promise<{ store: JobStore; id: string; transactions: Transactions }> {
  const transactions = new Transactions(redis, (err) => {
    throw err;
  });
  const keys = new Keys(`js${process.pid}x${++n}`);
  const store = new JobStore(redis, keys, { retentionMs: 60_000, sessionTtlMs: 60_000 }, transactions);
  const id = `job${n}`;
  await store.create(record(id));
  return { store, id, transactions };
}

describe('JobStore.update', () => {
  it('loses no change when many callers of one process update the same job at once', async () => {
    const { store, id, transactions } = await storeWithJob();
    try {
      // WATCH is per connection: on one shared connection these interleave, one caller's EXEC
      // clears the others' watches, and their read-modify-writes overwrite each other.
      await Promise.all(
        Array.from({ length: 40 }, (_, i) =>
          store.update(id, (r) => ({ ...r, outputs: [...(r.outputs ?? []), `p${i}`] })),
        ),
      );
      const after = await store.get(id);
      expect([...(after?.outputs ?? [])].sort()).toEqual(
        Array.from({ length: 40 }, (_, i) => `p${i}`).sort(),
      );
    } finally {
      await transactions.close();
    }
  });

  it('keeps a note made while another caller ends the job, or refuses it', async () => {
    const { store, id, transactions } = await storeWithJob();
    try {
      const [noted, ended] = await Promise.all([
        store.update(id, (r) => ({ ...r, outputs: [...(r.outputs ?? []), 'generated.png'] })),
        store.update(id, (r) => ({ ...r, state: 'CANCELLED' })),
      ]);
      expect(ended?.state).toBe('CANCELLED');
      const final = await store.get(id);
      // Either the note landed before the end (and the ended record carries it), or it was refused.
      if (noted) expect(final?.outputs).toEqual(['generated.png']);
      else expect(final?.outputs).toEqual([]);
      expect(ended?.outputs).toEqual(final?.outputs);
    } finally {
      await transactions.close();
    }
  });
});
