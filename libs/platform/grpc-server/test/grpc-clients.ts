import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { anonymousCredentials } from '@dops/security';

type AnyClientCtor = new (
  address: string,
  creds: grpc.ChannelCredentials,
) => grpc.Client & Record<string, (...args: unknown[]) => unknown>;

/** A plain grpc-js client of grpc.health.v1.Health, as any stranger would build it: TLS, no credential. */
export function healthClient(address: string, creds: grpc.ChannelCredentials = anonymousCredentials()) {
  const pkg = grpc.loadPackageDefinition(
    loadSync(healthProtoPath, { keepCase: true, enums: String, defaults: true }),
  ) as unknown as {
    grpc: { health: { v1: { Health: AnyClientCtor } } };
  };
  return new pkg.grpc.health.v1.Health(address, creds);
}

/** A plain grpc-js client of grpc.reflection.v1.ServerReflection, built from @grpc/reflection's own proto. */
export function reflectionClient(address: string) {
  const proto = join(
    dirname(require.resolve('@grpc/reflection')),
    '..',
    'proto',
    'grpc/reflection/v1/reflection.proto',
  );
  const pkg = grpc.loadPackageDefinition(
    loadSync(proto, { longs: String, enums: String, defaults: true, oneofs: true }),
  ) as unknown as {
    grpc: { reflection: { v1: { ServerReflection: AnyClientCtor } } };
  };
  return new pkg.grpc.reflection.v1.ServerReflection(address, anonymousCredentials());
}

export function unary<Res>(
  client: grpc.Client & Record<string, (...args: unknown[]) => unknown>,
  method: string,
  request: unknown,
): Promise<Res> {
  return new Promise((resolve, reject) =>
    client[method]!(request, (err: grpc.ServiceError | null, res: Res) => (err ? reject(err) : resolve(res))),
  );
}
