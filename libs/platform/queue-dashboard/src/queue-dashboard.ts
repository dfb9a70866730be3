import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import { QUEUE_NAMES, connectionOptions, createRedis, listNodes, nodeQueueName } from '@dops/queue';
import { TokenStore, type SecuritySettings } from '@dops/security';
import type { Logger } from '@dops/telemetry';
import { Queue } from 'bullmq';
import express from 'express';
import { dashboardAccess } from './bearer-access';

export interface QueueDashboardOptions {
  redisUrl: string;
  prefix: string;
  /** The service's TLS files and token file: HTTPS with its certificate, bearer tokens from its token file. */
  security: SecuritySettings;
  /** Default `127.0.0.1` (loopback). */
  host?: string;
  /** 0 binds a free port. */
  port: number;
  logger?: Logger;
}

export interface QueueDashboard {
  readonly port: number;
  close(): Promise<void>;
}

/** Where the dashboard lives on its port. */
export const DASHBOARD_PATH = '/queues';
// Announced inference nodes come and go; their queues are looked up again this often.
const REFRESH_MS = 10_000;

/**
 * bull-board over the dops queues (the stage queues and every announced node's inference queue),
 * read-only twice over: every queue in bull-board's readOnlyMode, and any method but GET/HEAD
 * refused (405) before bull-board sees it. Served over HTTPS with the service's certificate; a
 * request needs a bearer token of the role `operator` from the service's token file (401
 * without a valid one, 403 for another role). Rejects when the port cannot be bound or a TLS
 * file cannot be read.
 */
export async function startQueueDashboard(options: QueueDashboardOptions): Promise<QueueDashboard> {
  const tokens = options.security.tokensFile ? new TokenStore(options.security.tokensFile) : undefined;
  const redis = createRedis(options.redisUrl, { onError: () => undefined });
  const queues = new Map<string, Queue>();
  const serverAdapter = new ExpressAdapter().setBasePath(DASHBOARD_PATH);
  const board = createBullBoard({ queues: [], serverAdapter, options: { uiConfig: { boardTitle: 'dops' } } });
  let refreshedAt = 0;
  const refresh = async () => {
    if (Date.now() - refreshedAt < REFRESH_MS) return;
    refreshedAt = Date.now();
    const nodes = await listNodes(redis, options.prefix).catch(() => []);
    const names = [
      ...QUEUE_NAMES,
      ...nodes.filter((n) => n.service === 'inference').map((n) => nodeQueueName('inference', n.nodeId)),
    ];
    for (const name of names) {
      if (queues.has(name)) continue;
      const queue = new Queue(name, {
        connection: connectionOptions(options.redisUrl),
        prefix: options.prefix,
      });
      queue.on('error', () => undefined);
      queues.set(name, queue);
      board.addQueue(new BullMQAdapter(queue, { readOnlyMode: true, allowRetries: false }));
    }
  };

  const app = express();
  app.disable('x-powered-by');
  app.use((req, res, next) => {
    const access = dashboardAccess(req.headers.authorization, tokens, ['operator']);
    if (!access.ok) {
      if (access.status === 401) res.setHeader('www-authenticate', 'Bearer realm="dops"');
      res.status(access.status).json({ error: access.reason });
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      res.status(405).json({ error: 'the queue dashboard is read-only' });
      return;
    }
    refresh().then(() => next(), next);
  });
  app.use(DASHBOARD_PATH, serverAdapter.getRouter());

  const server: Server = createServer(
    { cert: readFileSync(options.security.certFile), key: readFileSync(options.security.keyFile) },
    app,
  );
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  options.logger?.info(
    { adminPort: port },
    `queue dashboard on https://${options.host ?? '127.0.0.1'}:${port}${DASHBOARD_PATH}`,
  );
  return {
    port,
    close: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      // Redis may be down at shutdown: disconnect rather than wait for a QUIT that never comes.
      await Promise.all([...queues.values()].map((q) => q.disconnect()));
      redis.disconnect();
    },
  };
}
