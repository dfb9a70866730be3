import { Queue } from 'bullmq';
import type { QueueDepth } from '@dops/metrics';
import type { Redis } from 'ioredis';
import { connectionOptions } from './connection';
import { QUEUE_NAMES, nodeQueueName } from './names';
import { listNodes } from './node-announcer';

/**
 * Reads the job counts of every dops queue (the shared stage queues and each announced inference
 * node's own queue) with BullMQ's `getJobCounts`, for a metrics scrape. Queue objects are made
 * once per name and closed by `close()`. `read()` rejects when Redis cannot be reached.
 */
export class QueueDepths {
  private readonly queues = new Map<string, Queue>();

  constructor(
    private readonly redis: Redis,
    private readonly redisUrl: string,
    private readonly prefix: string,
  ) {}

  async read(): Promise<QueueDepth[]> {
    const nodes = await listNodes(this.redis, this.prefix);
    const names = [
      ...QUEUE_NAMES,
      ...nodes.filter((n) => n.service === 'inference').map((n) => nodeQueueName('inference', n.nodeId)),
    ];
    return Promise.all(
      [...new Set(names)].map(async (name) => ({
        queue: name,
        counts: await this.queue(name).getJobCounts(),
      })),
    );
  }

  /** Drops the connections at once (no QUIT round trip: Redis may be down at shutdown). */
  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.disconnect()));
  }

  private queue(name: string): Queue {
    let q = this.queues.get(name);
    if (!q) {
      q = new Queue(name, { connection: connectionOptions(this.redisUrl), prefix: this.prefix });
      // Errors surface as the rejected read; the event itself must not go unhandled.
      q.on('error', () => undefined);
      this.queues.set(name, q);
    }
    return q;
  }
}
