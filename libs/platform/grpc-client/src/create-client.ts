import type { ChannelCredentials, Client, ClientOptions } from '@grpc/grpc-js';

/** A ts-proto generated client class, e.g. `deviceV1.DeviceServiceClient`. */
export interface ClientConstructor<C extends Client> {
  new (address: string, credentials: ChannelCredentials, options?: Partial<ClientOptions>): C;
  service: object;
}

export interface CreateClientOptions {
  /** Deadline of unary calls made with `call()` when the call sets none. Default 30 000 ms; streams have none by default. */
  deadlineMs?: number;
  /** TLS credentials (`clientCredentials` / `serviceClientCredentials` of @dops/security); required: every server is TLS. */
  credentials: ChannelCredentials;
  /** grpc-js channel options. */
  channelOptions?: Partial<ClientOptions>;
}

const DEFAULT_DEADLINE_MS = 30_000;
const defaults = new WeakMap<object, { deadlineMs: number }>();

/**
 * A client for `address` whose service methods are bound to it, so `call(client.getDevice, ...)`
 * works. Connects lazily; throws nothing. Close it with `client.close()`.
 */
export function createClient<C extends Client>(
  Ctor: ClientConstructor<C>,
  address: string,
  options: CreateClientOptions,
): C {
  const client = new Ctor(address, options.credentials, options.channelOptions);
  const settings = { deadlineMs: options.deadlineMs ?? DEFAULT_DEADLINE_MS };
  const methods = client as unknown as Record<string, unknown>;
  for (const name of Object.keys(Ctor.service)) {
    const method = methods[name];
    if (typeof method !== 'function') continue;
    const bound = method.bind(client) as object;
    defaults.set(bound, settings);
    methods[name] = bound;
  }
  return client;
}

/** The default unary deadline of a method taken from a client made by createClient. */
export function defaultDeadlineMs(method: object): number {
  return defaults.get(method)?.deadlineMs ?? DEFAULT_DEADLINE_MS;
}
