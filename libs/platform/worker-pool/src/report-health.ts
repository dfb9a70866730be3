import type { WorkerPool } from './worker-pool';

/** The part of a health registry this needs (e.g. @dops/grpc-server's ServiceHealth). */
export interface ServingSink {
  setServing(service: string, serving: boolean): void;
}

/**
 * Keeps `service` SERVING while no worker of the pool has hit its crash-loop limit (state
 * `failed`), NOT_SERVING from then until a reset brings every worker back.
 */
export function reportWorkerHealth(pool: WorkerPool, health: ServingSink, service: string): void {
  const update = () =>
    health.setServing(
      service,
      pool.list().every((w) => w.supervisor.state !== 'failed'),
    );
  pool.on('state', update);
  update();
}
