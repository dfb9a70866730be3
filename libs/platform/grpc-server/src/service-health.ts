import { HealthImplementation, type ServingStatus } from 'grpc-health-check';
import type { Server } from '@grpc/grpc-js';

/** Where the server as a whole stands; only `serving` reports anything as SERVING. */
export type HealthPhase = 'starting' | 'serving' | 'draining';

/**
 * Standard gRPC health checking (`grpc.health.v1.Health`, Check/Watch/List) for one server.
 * Each service has a wish (`setServing`) and reports SERVING only while the server is serving;
 * the overall status (service "") is SERVING when every registered service is.
 */
export class ServiceHealth {
  private readonly impl = new HealthImplementation({ '': 'NOT_SERVING' });
  private readonly wanted = new Map<string, boolean>();
  private readonly published = new Map<string, ServingStatus>([['', 'NOT_SERVING']]);
  private phase: HealthPhase = 'starting';

  /** Adds a service, serving by default once the server starts. */
  register(serviceName: string): void {
    if (!this.wanted.has(serviceName)) this.wanted.set(serviceName, true);
    this.publish();
  }

  /** Reports a service (e.g. one whose worker crash-loops) as NOT_SERVING, or back. Throws for an unregistered name. */
  setServing(serviceName: string, serving: boolean): void {
    if (!this.wanted.has(serviceName)) throw new Error(`health: unknown service '${serviceName}'`);
    this.wanted.set(serviceName, serving);
    this.publish();
  }

  /** The status that Check answers for `serviceName` ("" = overall); undefined when unknown. */
  status(serviceName = ''): ServingStatus | undefined {
    if (serviceName === '') return this.overall();
    const wanted = this.wanted.get(serviceName);
    if (wanted === undefined) return undefined;
    return this.phase === 'serving' && wanted ? 'SERVING' : 'NOT_SERVING';
  }

  /** Moves the server's phase: `serving` after bind, `draining` at shutdown (everything NOT_SERVING). */
  setPhase(phase: HealthPhase): void {
    this.phase = phase;
    this.publish();
  }

  addToServer(server: Server): void {
    this.impl.addToServer(server);
  }

  private overall(): ServingStatus {
    const all = [...this.wanted.values()].every(Boolean);
    return this.phase === 'serving' && all ? 'SERVING' : 'NOT_SERVING';
  }

  private publish(): void {
    // HealthImplementation notifies watchers on every set, so only changes are set.
    const set = (name: string, status: ServingStatus) => {
      if (this.published.get(name) === status) return;
      this.published.set(name, status);
      this.impl.setStatus(name, status);
    };
    for (const name of this.wanted.keys()) set(name, this.status(name)!);
    set('', this.overall());
  }
}
