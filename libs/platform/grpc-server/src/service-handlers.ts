import type { ServiceDefinition } from '@grpc/grpc-js';
import type { AccessPolicy } from '@dops/security';
import type { CallContext } from './call-context';

/** `async (request, ctx) => response`; throw a DopsError to fail the call with its status. */
export type UnaryHandler<Req, Res> = (request: Req, ctx: CallContext) => Promise<Res> | Res;

/** Writes one message, waiting while the transport is backed up; rejects once ctx.signal is aborted. */
export type Send<Res> = (message: Res) => Promise<void>;

/**
 * A server stream, either `async function* (request, ctx) { yield ... }` or
 * `async (request, ctx, send) => { await send(...) }`. The stream ends when the generator or
 * promise finishes; a client cancel aborts ctx.signal and stops pulling from the generator.
 */
export type ServerStreamHandler<Req, Res> = (
  request: Req,
  ctx: CallContext,
  send: Send<Res>,
) => AsyncIterable<Res> | Promise<void>;

type RequestOf<M> = M extends { requestDeserialize: (bytes: Buffer) => infer Req } ? Req : never;
type ResponseOf<M> = M extends { responseSerialize: (value: infer Res) => Buffer } ? Res : never;

/** The handler object for a ts-proto service definition: one async handler per method. */
export type ServiceHandlers<S> = {
  [K in keyof S]: S[K] extends { requestStream: false; responseStream: false }
    ? UnaryHandler<RequestOf<S[K]>, ResponseOf<S[K]>>
    : S[K] extends { requestStream: false; responseStream: true }
      ? ServerStreamHandler<RequestOf<S[K]>, ResponseOf<S[K]>>
      : never; // client and bidi streams: not supported until an RPC needs one
};

/** One service to serve: its generated definition, its full name and its handlers. */
export interface ServiceRegistration<S = ServiceDefinition> {
  /** Full proto name, e.g. `dops.device.v1.DeviceService`; the name health and reflection use. */
  serviceName: string;
  /** ts-proto's `...Service` constant, e.g. `deviceV1.DeviceServiceService`. */
  definition: S;
  implementation: ServiceHandlers<S>;
  /** Who may call which method; the server refuses a registration without one. */
  access: AccessPolicy<Extract<keyof S, string>>;
}

/**
 * A registration for `definition` with typed handlers and the roles that may call each method
 * (`{ default: ['operator'], methods: { listDevices: ['client', 'operator'] } }`); the service
 * name is read from the method paths. Throws when the definition has no methods or mixes services.
 */
export function defineService<S extends ServiceDefinition>(
  definition: S,
  implementation: ServiceHandlers<S>,
  access: AccessPolicy<Extract<keyof S, string>>,
): ServiceRegistration<S> {
  return { serviceName: serviceNameOf(definition), definition, implementation, access };
}

/** `dops.device.v1.DeviceService` from the paths of a definition's methods. */
export function serviceNameOf(definition: ServiceDefinition): string {
  const names = new Set(Object.values(definition).map((m) => m.path.split('/')[1] ?? ''));
  const [name] = names;
  if (names.size !== 1 || !name)
    throw new Error(`cannot tell the service name of a definition with paths ${[...names].join(', ')}`);
  return name;
}
