import { EventEmitter } from 'node:events';
import { DopsError } from '@dops/errors';
import type { PooledWorker, WorkerPool } from '../worker-pool';
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

export interface DrainOutcome {
  device: DeviceView;
  drained: boolean;
  /** What still runs when not drained: "inference: 1 job". */
  running: string[];
}

/**
 * The devices of one worker-owning service (inference, postprocessing) with their scheduling
 * state (cordon / drain) layered over the worker pool that probes and runs them, and the work in
 * flight on each device (`track`). The service's own work asks `isCordoned` / `waitSchedulable`
 * before it sends anything to a device, so a cordon stops new work there. Emits `change` for
 * every visible change.
 */
export class DeviceFleet extends EventEmitter<{ change: [DeviceChange] }> {
  private readonly scheduling = new Map<string, SchedulingState>();
  private readonly inFlight = new Map<string, number>();

  constructor(
    private readonly pool: WorkerPool,
    /** The owning service's name, in what `drain` reports as still running. */
    readonly service = 'workers',
  ) {
    super();
    this.setMaxListeners(0);
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

  /** True while the device is cordoned or draining (its worker's readiness aside). Throws NOT_FOUND. */
  isCordoned(deviceId: string): boolean {
    this.pool.get(deviceId);
    return this.schedulingOf(deviceId) !== 'schedulable';
  }

  /** True when every device is cordoned: the service should take no new work at all. */
  allCordoned(): boolean {
    const workers = this.pool.list();
    return workers.length > 0 && workers.every((w) => this.schedulingOf(w.device.id) !== 'schedulable');
  }

  /** Resolves once the device is no longer cordoned; rejects with the signal's reason when it aborts. */
  waitSchedulable(deviceId: string, signal?: AbortSignal): Promise<void> {
    if (!this.isCordoned(deviceId)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onChange = (change: DeviceChange) => {
        if (change.device.id === deviceId && change.device.scheduling === 'schedulable') done(resolve);
      };
      const onAbort = () => done(() => reject(signal?.reason));
      const done = (settle: () => void) => {
        this.off('change', onChange);
        signal?.removeEventListener('abort', onAbort);
        settle();
      };
      this.on('change', onChange);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Counts `work` as running on the device until it settles (drain waits for it). Returns `work`. */
  track<T>(deviceId: string, work: Promise<T>): Promise<T> {
    this.inFlight.set(deviceId, (this.inFlight.get(deviceId) ?? 0) + 1);
    const settled = () => this.inFlight.set(deviceId, (this.inFlight.get(deviceId) ?? 1) - 1);
    work.then(settled, settled);
    return work;
  }

  /** Work running on the device: tracked work, else the worker's requests in flight. */
  running(deviceId: string): number {
    const worker = this.pool.get(deviceId);
    return Math.max(this.inFlight.get(deviceId) ?? 0, worker.supervisor.health().activeRequests);
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
   * Cordons the device, then waits until the work running on it has ended or the timeout
   * passes; the device stays cordoned either way. Throws NOT_FOUND.
   */
  async drain(deviceId: string, options: DrainOptions = {}): Promise<DrainOutcome> {
    this.pool.get(deviceId);
    const timeoutMs = options.timeoutMs ?? 60_000;
    const pollMs = options.pollMs ?? 100;
    const until = Date.now() + timeoutMs;
    this.setScheduling(deviceId, 'draining');
    let running = this.running(deviceId);
    while (running > 0 && Date.now() < until && !options.signal?.aborted) {
      await new Promise((r) => setTimeout(r, Math.min(pollMs, Math.max(until - Date.now(), 1))));
      running = this.running(deviceId);
    }
    this.setScheduling(deviceId, 'cordoned');
    return {
      device: this.get(deviceId),
      drained: running === 0,
      running: running > 0 ? [`${this.service}: ${running} ${running === 1 ? 'job' : 'jobs'}`] : [],
    };
  }

  /**
   * Restarts the device's worker (clearing a crash-loop `failed` state) and resolves once it is
   * ready and has probed the device again. Unless `force`, drains first (FAILED_PRECONDITION
   * saying what still runs when the drain times out; nothing is restarted then) and makes the
   * device schedulable again afterwards if it was. Throws NOT_FOUND; rejects UNAVAILABLE when
   * the new worker does not start.
   */
  async reset(
    deviceId: string,
    options: { force?: boolean; drainTimeoutMs?: number } = {},
  ): Promise<DeviceView> {
    const worker = this.pool.get(deviceId);
    if (!options.force) {
      const before = this.schedulingOf(deviceId);
      const { drained, running } = await this.drain(deviceId, {
        timeoutMs: options.drainTimeoutMs ?? 60_000,
      });
      if (!drained) {
        if (before === 'schedulable') this.setScheduling(deviceId, 'schedulable');
        throw new DopsError(
          'FAILED_PRECONDITION',
          `device_id: work still runs on ${deviceId} (${running.join('; ')}); reset with force to stop it`,
          { violations: [{ field: 'device_id', description: `work still runs: ${running.join('; ')}` }] },
        );
      }
      try {
        await worker.supervisor.reset();
      } finally {
        if (before === 'schedulable') this.setScheduling(deviceId, 'schedulable');
      }
      return this.get(deviceId);
    }
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
