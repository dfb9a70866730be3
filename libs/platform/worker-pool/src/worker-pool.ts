import { EventEmitter } from 'node:events';
import { DopsError } from '@dops/errors';
import {
  WorkerSupervisor,
  type InitializeResult,
  type SupervisorLogger,
  type WorkerDevice,
  type WorkerHeartbeat,
  type WorkerState,
  type WorkerSupervisorOptions,
} from '@dops/worker-supervisor';

export type BackendChoice = 'auto' | 'cuda' | 'rocm' | 'directml' | 'cpu';

export interface WorkerPoolOptions {
  /** Prefix of each worker's name in logs, e.g. the owning service. */
  name: string;
  /** Passed to every worker's `initialize`. */
  backend: BackendChoice;
  /** Supervisor options shared by every worker (command, timeouts, ...). */
  supervisor: WorkerSupervisorOptions;
  /** Every worker's supervisor logs here (its own and the worker's log lines), unless
   * `supervisor.logger` names another. */
  logger: SupervisorLogger;
}

export interface PooledWorker {
  /** The device this worker runs, as its own probe described it. */
  device: WorkerDevice;
  supervisor: WorkerSupervisor;
}

export interface WorkerPoolEvents {
  state: [deviceId: string, state: WorkerState, previous: WorkerState];
  heartbeat: [deviceId: string, beat: WorkerHeartbeat];
  /** The worker re-initialised (after a crash or reset) and probed its device again. */
  probed: [deviceId: string, device: WorkerDevice];
}

/**
 * One supervised worker per device of this node. The first worker (device index 0) tells how
 * many devices the backend has; one more worker is started per further device. Every worker
 * holds the only context on its device (DESIGN §1).
 */
export class WorkerPool extends EventEmitter<WorkerPoolEvents> {
  private readonly workers = new Map<string, PooledWorker>();

  constructor(private readonly options: WorkerPoolOptions) {
    super();
  }

  /** Starts every device's worker; rejects UNAVAILABLE when the first cannot start. */
  async start(): Promise<void> {
    const first = this.createSupervisor(0);
    await first.start();
    const init = initializeResultOf(first);
    const count = Math.max(init.deviceCount ?? init.devices.length, 1);
    this.adopt(first, deviceOf(init, 0));
    const rest = [];
    for (let index = 1; index < count; index += 1) rest.push(this.startDevice(index));
    await Promise.all(rest);
  }

  private async startDevice(index: number): Promise<void> {
    const supervisor = this.createSupervisor(index);
    await supervisor.start();
    this.adopt(supervisor, deviceOf(initializeResultOf(supervisor), index));
  }

  private createSupervisor(index: number): WorkerSupervisor {
    const { supervisor, name, backend, logger } = this.options;
    return new WorkerSupervisor({
      ...supervisor,
      logger: supervisor.logger ?? logger,
      name: `${name}-worker-${index}`,
      env: { ...(supervisor.env ?? process.env), DOPS_BACKEND: backend, DOPS_DEVICE_INDEX: String(index) },
      initializeParams: { ...supervisor.initializeParams, backend, deviceIndex: index },
    });
  }

  private adopt(supervisor: WorkerSupervisor, device: WorkerDevice): void {
    const entry: PooledWorker = { device, supervisor };
    this.workers.set(device.id, entry);
    supervisor.on('state', (state, previous) => {
      if (state === 'ready') {
        const init = supervisor.health().initializeResult;
        if (init) {
          entry.device = deviceOf(init, device.index);
          this.emit('probed', device.id, entry.device);
        }
      }
      this.emit('state', device.id, state, previous);
    });
    supervisor.on('heartbeat', (beat) => this.emit('heartbeat', device.id, beat));
  }

  /** Every device's worker, in device index order. */
  list(): PooledWorker[] {
    return [...this.workers.values()].sort((a, b) => a.device.index - b.device.index);
  }

  /** Throws DopsError NOT_FOUND for an unknown device id. */
  get(deviceId: string): PooledWorker {
    const entry = this.workers.get(deviceId);
    if (!entry) throw DopsError.notFound('device', deviceId);
    return entry;
  }

  /** Gracefully stops every worker (shutdown request → stdin close → SIGTERM → SIGKILL). */
  async stop(): Promise<void> {
    await Promise.all([...this.workers.values()].map((w) => w.supervisor.stop()));
  }
}

function initializeResultOf(supervisor: WorkerSupervisor): InitializeResult & { deviceCount?: number } {
  const init = supervisor.health().initializeResult;
  if (!init)
    throw new DopsError(
      'INTERNAL',
      `worker ${supervisor.options.name} is ready without an initialize result`,
    );
  return init;
}

function deviceOf(init: InitializeResult, index: number): WorkerDevice {
  const device = init.devices.find((d) => d.index === index) ?? init.devices[0];
  if (!device) throw new DopsError('INTERNAL', `worker for device ${index} reported no device`);
  return device;
}
