import { Server, ServerCredentials, type ChannelOptions, type ServiceDefinition } from '@grpc/grpc-js';
import { DopsError } from '@dops/errors';
import type { ServerSecurity } from '@dops/security';
import type { Logger } from '@dops/telemetry';
import { adaptService, type CallTracker } from './adapt-handlers';
import { withSafeDecoding } from './request-decoding';
import type { CallScope } from './call-context';
import { createReflectionService } from './reflection';
import { ServiceHealth } from './service-health';
import type { ServiceRegistration } from './service-handlers';

const NOTIFY_WATCHERS_MS = 50;

/** Lifecycle of a GrpcServer. */
export type GrpcServerState = 'created' | 'starting' | 'ready' | 'draining' | 'stopped';

/** Work to run once calls are over, e.g. stopping workers; errors are logged, never thrown. */
export type ShutdownHook = () => Promise<void> | void;

export interface GrpcServerOptions {
  /** Names the server in logs, e.g. `device`. */
  name: string;
  logger: Logger;
  /** TLS credentials and the authenticator of callers (createServerSecurity); there is no plaintext mode. */
  security: ServerSecurity;
  /** Registrations from `defineService` (or hand-built ones of the same shape). */
  services: readonly ServiceRegistration<ServiceDefinition>[];
  /** Default `0.0.0.0`. */
  host?: string;
  /** 0 binds a free port; `start()` returns the one bound. */
  port: number;
  /**
   * A second, plaintext port serving grpc.health.v1 only (the same health state), for probes
   * that cannot speak TLS, such as Kubernetes' gRPC probes. It reveals nothing but serving
   * status. Unset = none; 0 = a free port (see `healthAddress`).
   */
  healthPort?: number;
  /** How long shutdown waits for in-flight calls before cancelling them. Default 10 000 ms. */
  shutdownGraceMs?: number;
  /** Health state to serve; default a new one. Pass your own to flip services from outside. */
  health?: ServiceHealth;
  /** Serve gRPC server reflection. Default true. */
  reflection?: boolean;
  /** Descriptor set for reflection. Default `DESCRIPTOR_SET_PATH` of @dops/proto. */
  descriptorSetPath?: string;
  /** grpc-js channel options, e.g. `{ 'grpc.max_receive_message_length': ... }`. */
  channelOptions?: ChannelOptions;
  /** Hooks run after the calls are over, in order. */
  onShutdown?: ShutdownHook[];
}

/**
 * A grpc-js server with the dops defaults: health, reflection, async handlers with a CallContext,
 * error mapping, per-call logs, and a graceful shutdown. One instance serves once.
 */
export class GrpcServer {
  readonly name: string;
  readonly health: ServiceHealth;
  private readonly server: Server;
  private readonly healthServer: Server | undefined;
  private boundHealthPort: number | undefined;
  private readonly options: GrpcServerOptions;
  private readonly logger: Logger;
  private readonly hooks: ShutdownHook[];
  private readonly inflight = new Set<CallScope>();
  private idleWaiters: (() => void)[] = [];
  private stateValue: GrpcServerState = 'created';
  private port: number | undefined;
  private stopping: Promise<void> | undefined;

  constructor(options: GrpcServerOptions) {
    this.options = options;
    this.name = options.name;
    this.logger = options.logger;
    this.hooks = [...(options.onShutdown ?? [])];
    this.health = options.health ?? new ServiceHealth();
    this.server = new Server(options.channelOptions);
    const tracker: CallTracker = {
      logger: this.logger,
      authenticator: options.security.authenticator,
      begin: (scope) => {
        if (this.stateValue !== 'ready') return false;
        this.inflight.add(scope);
        return true;
      },
      end: (scope) => {
        this.inflight.delete(scope);
        if (this.inflight.size === 0) for (const wake of this.idleWaiters.splice(0)) wake();
      },
    };
    const names = new Set<string>();
    for (const registration of options.services) {
      if (names.has(registration.serviceName))
        throw new Error(`service ${registration.serviceName} registered twice`);
      names.add(registration.serviceName);
      if (!registration.access)
        throw new Error(`service ${registration.serviceName} has no access policy; defineService takes one`);
      this.server.addService(withSafeDecoding(registration.definition), adaptService(registration, tracker));
      this.health.register(registration.serviceName);
    }
    this.health.addToServer(this.server);
    if (options.healthPort !== undefined) {
      this.healthServer = new Server();
      this.health.addToServer(this.healthServer);
    }
    if (options.reflection ?? true)
      createReflectionService([...names], options.descriptorSetPath).addToServer(this.server);
  }

  get state(): GrpcServerState {
    return this.stateValue;
  }

  /** Calls being served right now (health and reflection excluded). */
  get inflightCalls(): number {
    return this.inflight.size;
  }

  /** `host:port` once started. */
  get address(): string | undefined {
    return this.port === undefined ? undefined : `${this.options.host ?? '0.0.0.0'}:${this.port}`;
  }

  /** `host:port` of the plaintext health port once started; undefined without one. */
  get healthAddress(): string | undefined {
    return this.boundHealthPort === undefined
      ? undefined
      : `${this.options.host ?? '0.0.0.0'}:${this.boundHealthPort}`;
  }

  /** Adds a hook run at shutdown after the calls are over (e.g. `() => supervisor.stop()`). */
  onShutdown(hook: ShutdownHook): void {
    this.hooks.push(hook);
  }

  /** Binds and starts serving; resolves to the bound port. Rejects when the address is taken or the server was started before. */
  async start(): Promise<number> {
    if (this.stateValue !== 'created')
      throw new Error(`server ${this.name} is ${this.stateValue}; a server starts once`);
    this.stateValue = 'starting';
    const host = this.options.host ?? '0.0.0.0';
    const address = `${host.includes(':') ? `[${host}]` : host}:${this.options.port}`;
    try {
      // Connections that arrive before the certificate files are read would be dropped.
      await this.options.security.ready();
      this.port = await new Promise<number>((resolve, reject) =>
        this.server.bindAsync(address, this.options.security.credentials, (err, port) =>
          err ? reject(err) : resolve(port),
        ),
      );
      const healthServer = this.healthServer;
      if (healthServer) {
        const healthAddress = address.replace(/:\d+$/, `:${this.options.healthPort}`);
        this.boundHealthPort = await new Promise<number>((resolve, reject) =>
          healthServer.bindAsync(healthAddress, ServerCredentials.createInsecure(), (err, port) =>
            err ? reject(err) : resolve(port),
          ),
        );
      }
    } catch (err) {
      this.server.forceShutdown();
      this.healthServer?.forceShutdown();
      this.stateValue = 'stopped';
      throw err;
    }
    this.stateValue = 'ready';
    this.health.setPhase('serving');
    this.logger.info(
      { server: this.name, host, port: this.port, tls: true, health_port: this.boundHealthPort },
      'gRPC server listening',
    );
    return this.port;
  }

  /**
   * Graceful stop: health → NOT_SERVING, no new calls, in-flight calls get up to
   * `shutdownGraceMs` (default 10 s), then are cancelled (ctx.signal aborts with UNAVAILABLE) and
   * the transport is closed; then the shutdown hooks run. Idempotent; never rejects.
   */
  shutdown(): Promise<void> {
    this.stopping ??= this.drain();
    return this.stopping;
  }

  private async drain(): Promise<void> {
    const graceMs = this.options.shutdownGraceMs ?? 10_000;
    const wasServing = this.stateValue === 'ready';
    this.stateValue = 'draining';
    this.health.setPhase('draining');
    if (wasServing) {
      this.logger.info(
        { server: this.name, inflight: this.inflight.size, grace_ms: graceMs },
        'gRPC server draining',
      );
      // tryShutdown stops the listeners and sends GOAWAY; its callback may never come while a
      // client keeps a health Watch open, so our own calls decide how long we wait.
      this.server.tryShutdown(() => undefined);
      const idle = await this.waitIdle(graceMs);
      if (!idle) {
        this.logger.warn(
          { server: this.name, inflight: this.inflight.size },
          'grace period over; cancelling calls still running',
        );
        for (const scope of this.inflight)
          scope.abort(DopsError.unavailable(`server ${this.name} is shutting down`));
      }
    }
    // A moment for health watchers to receive NOT_SERVING before the transport closes under them.
    await new Promise((resolve) => setTimeout(resolve, Math.min(NOTIFY_WATCHERS_MS, graceMs)));
    this.server.forceShutdown();
    this.healthServer?.forceShutdown();
    for (const hook of this.hooks) {
      try {
        await hook();
      } catch (err) {
        this.logger.error({ err, server: this.name }, 'shutdown hook failed');
      }
    }
    this.stateValue = 'stopped';
    this.logger.info({ server: this.name }, 'gRPC server stopped');
  }

  private waitIdle(timeoutMs: number): Promise<boolean> {
    if (this.inflight.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }
}

/** A GrpcServer for `options`; nothing binds until `start()`. Throws for a missing handler or a duplicate service. */
export function createGrpcServer(options: GrpcServerOptions): GrpcServer {
  return new GrpcServer(options);
}
