import type { Redis } from 'ioredis';
import { nodeKey, nodesKey } from './names';

/** One device of a node as announced. */
export interface AnnouncedDevice {
  id: string;
  backend: string;
  state: string;
  residentModels: string[];
  activeJobs: number;
}

/** `<prefix>:node:<nodeId>` decoded. */
export interface NodeAnnouncement {
  nodeId: string;
  service: string;
  devices: AnnouncedDevice[];
  /** Epoch ms. */
  updatedAt: number;
}

export interface NodeAnnouncerOptions {
  prefix: string;
  nodeId: string;
  /** `inference` or `postprocessing`. */
  service: string;
  /** This node's devices now; called on every beat. */
  devices: () => AnnouncedDevice[] | Promise<AnnouncedDevice[]>;
  /** Default 5 000 ms. */
  intervalMs?: number;
  /** Default 15 s (three missed beats). */
  ttlSeconds?: number;
  onError?: (err: unknown) => void;
}

/**
 * Announces a node in Redis with a TTL heartbeat: hash `<prefix>:node:<nodeId>` =
 * `{nodeId, service, devices: JSON, updatedAt}` with EXPIRE, and the id in `<prefix>:nodes`.
 * A failed beat is reported to `onError` and retried on the next one; `stop()` deletes the hash.
 */
export class NodeAnnouncer {
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly redis: Redis,
    private readonly options: NodeAnnouncerOptions,
  ) {}

  /** Announces once (rejects when Redis does), then every interval. */
  async start(): Promise<void> {
    await this.beat();
    this.timer = setInterval(() => {
      this.beat().catch((err: unknown) => this.options.onError?.(err));
    }, this.options.intervalMs ?? 5_000);
    this.timer.unref();
  }

  /** Writes the announcement now (e.g. right after a model load). */
  async beat(): Promise<void> {
    const { prefix, nodeId, service } = this.options;
    const devices = await this.options.devices();
    const key = nodeKey(prefix, nodeId);
    await this.redis
      .multi()
      .hset(key, { nodeId, service, devices: JSON.stringify(devices), updatedAt: String(Date.now()) })
      .expire(key, this.options.ttlSeconds ?? 15)
      .sadd(nodesKey(prefix), nodeId)
      .exec();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    const { prefix, nodeId } = this.options;
    await this.redis.multi().del(nodeKey(prefix, nodeId)).srem(nodesKey(prefix), nodeId).exec();
  }
}

/** Every live announcement (expired ones are dropped from `<prefix>:nodes` on the way). */
export async function listNodes(redis: Redis, prefix: string): Promise<NodeAnnouncement[]> {
  const ids = await redis.smembers(nodesKey(prefix));
  const nodes: NodeAnnouncement[] = [];
  for (const id of ids) {
    const hash = await redis.hgetall(nodeKey(prefix, id));
    if (!hash['nodeId']) {
      await redis.srem(nodesKey(prefix), id);
      continue;
    }
    let devices: AnnouncedDevice[] = [];
    try {
      devices = JSON.parse(hash['devices'] ?? '[]') as AnnouncedDevice[];
    } catch {
      devices = [];
    }
    nodes.push({
      nodeId: hash['nodeId'],
      service: hash['service'] ?? '',
      devices,
      updatedAt: Number(hash['updatedAt'] ?? 0),
    });
  }
  return nodes;
}
