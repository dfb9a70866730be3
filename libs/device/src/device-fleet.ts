import { EventEmitter } from 'node:events';
import { DopsError } from '@dops/errors';
import type { PooledWorker, WorkerPool } from '@dops/worker-pool';
import type { WorkerDevice, WorkerState } from '@dops/worker-supervisor';

export type SchedulingState = 'schedulable' | 'cordoned' | 'draining';
export type ChangeReason = 'initial' | 'worker_state' | 'scheduling' | 'heartbeat' | 'probe';

export interface DeviceHealthView {
  workerState: WorkerState;
  lastHeartbeatAt: number | undefined;
  restarts: number;
  lastError: string | undefined;
  activeRequests: number;
  workerPid: number | undefined;
}

/** One device as the device service reports it: the worker's probe plus scheduling and health. */
export interface DeviceView extends WorkerDevice {
  scheduling: SchedulingState;
  health: DeviceHealthView;
}

export interface DeviceChange {
  device: DeviceView;
  reason: ChangeReason;
}

export interface DrainOptions {
  /** Longest wait for running work; default 60 000 ms. */
  timeoutMs?: number;
  /** Aborting ends the wait early (the device stays cordoned). */
  signal?: AbortSignal;
  /** How often running work is checked; default 100 ms. */
  pollMs?: number;
}

/**
 * The devices of this node with their scheduling state (cordon / drain) layered over the
 * worker pool that probes and runs them. Emits `change` for every visible change.
 */
export class DeviceFleet extends EventEmitter<{ change: [DeviceChange] }> {
  private readonly scheduling = new Map<string, SchedulingState>();

  constructor(private readonly pool: WorkerPool) {
    super();
    pool.on('state', (id) => this.changed(id, 'worker_state'));
    pool.on('heartbeat', (id) => this.changed(id, 'heartbeat'));
    pool.on('probed', (id) => this.changed(id, 'probe'));
  }

  list(): DeviceView[] {
    return this.pool.list().map((w) => this.view(w));
  }

  /** Throws NOT_FOUND for an unknown id. */
  get(deviceId: string): DeviceView {
    return this.view(this.pool.get(deviceId));
  }

  /** True when new work may be scheduled to the device. Throws NOT_FOUND for an unknown id. */
  isSchedulable(deviceId: string): boolean {
    const worker = this.pool.get(deviceId);
    return this.schedulingOf(deviceId) === 'schedulable' && worker.supervisor.state === 'ready';
  }

  /** Stops scheduling to the device; running work continues. Throws NOT_FOUND. */
  cordon(deviceId: string): DeviceView {
    this.pool.get(deviceId);
    this.setScheduling(deviceId, 'cordoned');
    return this.get(deviceId);
  }

  /** Throws NOT_FOUND. */
  uncordon(deviceId: string): DeviceView {
    this.pool.get(deviceId);
    this.setScheduling(deviceId, 'schedulable');
    return this.get(deviceId);
  }

  /**
   * Cordons the device, then waits until its worker has no running request or the timeout
   * passes; the device stays cordoned either way. Throws NOT_FOUND.
   */
  async drain(
    deviceId: string,
    options: DrainOptions = {},
  ): Promise<{ device: DeviceView; drained: boolean }> {
    const worker = this.pool.get(deviceId);
    const timeoutMs = options.timeoutMs ?? 60_000;
    const pollMs = options.pollMs ?? 100;
    const until = Date.now() + timeoutMs;
    this.setScheduling(deviceId, 'draining');
    let drained = worker.supervisor.health().activeRequests === 0;
    while (!drained && Date.now() < until && !options.signal?.aborted) {
      await new Promise((r) => setTimeout(r, Math.min(pollMs, Math.max(until - Date.now(), 1))));
      drained = worker.supervisor.health().activeRequests === 0;
    }
    this.setScheduling(deviceId, 'cordoned');
    return { device: this.get(deviceId), drained };
  }

  /**
   * Restarts the device's worker (clearing a crash-loop `failed` state) and resolves once it
   * is ready and has probed the device again. Throws NOT_FOUND; rejects UNAVAILABLE when the
   * new worker does not start.
   */
  async reset(deviceId: string): Promise<DeviceView> {
    const worker = this.pool.get(deviceId);
    await worker.supervisor.reset();
    return this.get(deviceId);
  }

  private schedulingOf(deviceId: string): SchedulingState {
    return this.scheduling.get(deviceId) ?? 'schedulable';
  }

  private setScheduling(deviceId: string, state: SchedulingState): void {
    if (this.schedulingOf(deviceId) === state) return;
    this.scheduling.set(deviceId, state);
    this.changed(deviceId, 'scheduling');
  }

  private changed(deviceId: string, reason: ChangeReason): void {
    try {
      this.emit('change', { device: this.get(deviceId), reason });
    } catch (err) {
      // A pool event can precede the device's registration (first start); nothing to report yet.
      if (!(err instanceof DopsError && err.code === 'NOT_FOUND')) throw err;
    }
  }

  private view({ device, supervisor }: PooledWorker): DeviceView {
    const h = supervisor.health();
    return {
      ...device,
      scheduling: this.schedulingOf(device.id),
      health: {
        workerState: h.state,
        lastHeartbeatAt: h.lastHeartbeatAt,
        restarts: h.restarts,
        lastError: h.lastError?.message,
        activeRequests: h.activeRequests,
        workerPid: h.pid,
      },
    };
  }
}
