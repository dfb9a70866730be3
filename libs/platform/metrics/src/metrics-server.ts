import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface MetricsServerOptions {
  registry: Registry;
  /** Default `127.0.0.1` (loopback). */
  host?: string;
  /** 0 binds a free port. */
  port: number;
  /** Added to every series, e.g. `{ service: 'processing' }`. */
  labels?: Record<string, string>;
}

export interface MetricsServer {
  /** The bound port. */
  readonly port: number;
  /** The bound interface, e.g. `127.0.0.1`. */
  readonly address: string;
  /** Stops listening and ends open connections; resolves when closed. */
  close(): Promise<void>;
}

// A scrape that takes longer is answered 503 rather than left hanging (Prometheus' default timeout is 10 s).
const SCRAPE_TIMEOUT_MS = 8_000;

/**
 * Serves `GET /metrics` (Prometheus text format) over plaintext HTTP; every other path is 404,
 * every other method 405. Rejects when the port cannot be bound.
 */
export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const { registry } = options;
  if (options.labels) registry.setDefaultLabels(options.labels);
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('scrape timed out')), SCRAPE_TIMEOUT_MS);
    });
    Promise.race([registry.metrics(), timeout])
      .then((text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text))
      .catch((err: unknown) =>
        res.writeHead(503, { 'content-type': 'text/plain' }).end(`${(err as Error).message}\n`),
      )
      .finally(() => clearTimeout(timer));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    address: (server.address() as AddressInfo).address,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
