import type { ServiceDefinition } from '@grpc/grpc-js';
import {
  createGrpcServer,
  type GrpcServer,
  type GrpcServerOptions,
  type ServiceRegistration,
} from '@dops/grpc-server';
import { createLogger } from '@dops/telemetry';
import { testServerSecurity } from '@dops/security';

export interface TestServer {
  /** `127.0.0.1:<port>`, ready for createClient. */
  address: string;
  port: number;
  server: GrpcServer;
  /** Graceful shutdown with the server's grace period; safe to call twice. */
  stop(): Promise<void>;
}

/**
 * Starts a real server with `registrations` on 127.0.0.1 and a free port, over TLS with the
 * development identity of `processing` unless `security` is given (clients: testCredentials),
 * logging nothing unless `logger` is given. Rejects when binding fails.
 */
export async function startTestServer(
  registrations: readonly ServiceRegistration<ServiceDefinition>[],
  options: Partial<Omit<GrpcServerOptions, 'services' | 'host' | 'port'>> = {},
): Promise<TestServer> {
  const server = createGrpcServer({
    name: 'test',
    logger: createLogger({ name: 'test', level: 'silent' }),
    shutdownGraceMs: 1_000,
    ...options,
    security: options.security ?? testServerSecurity(),
    services: registrations,
    host: '127.0.0.1',
    port: 0,
  });
  const port = await server.start();
  return { address: `127.0.0.1:${port}`, port, server, stop: () => server.shutdown() };
}
