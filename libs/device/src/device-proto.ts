import { enumValue } from '@dops/validation';
import { backendV1, deviceV1 } from '@dops/proto';
import type { WorkerState } from '@dops/worker-supervisor';
import type { DeviceView, SchedulingState } from './device-fleet';

const WORKER_STATE: Record<WorkerState, backendV1.WorkerState> = {
  starting: backendV1.WorkerState.STARTING,
  ready: backendV1.WorkerState.READY,
  draining: backendV1.WorkerState.DRAINING,
  stopped: backendV1.WorkerState.STOPPED,
  crashed: backendV1.WorkerState.CRASHED,
  failed: backendV1.WorkerState.FAILED,
};

const SCHEDULING: Record<SchedulingState, deviceV1.SchedulingState> = {
  schedulable: deviceV1.SchedulingState.SCHEDULABLE,
  cordoned: deviceV1.SchedulingState.CORDONED,
  draining: deviceV1.SchedulingState.DRAINING,
};

/** The wire form of a device. */
export function toProtoDevice(d: DeviceView): deviceV1.Device {
  return {
    id: d.id,
    index: d.index,
    backend: enumValue(backendV1.Backend, d.backend) ?? backendV1.Backend.UNSPECIFIED,
    name: d.name,
    vendor: d.vendor,
    totalMemoryBytes: d.totalMemoryBytes,
    capabilities: { ...d.capabilities },
    health: {
      workerState: WORKER_STATE[d.health.workerState],
      lastHeartbeatTime:
        d.health.lastHeartbeatAt === undefined ? undefined : new Date(d.health.lastHeartbeatAt),
      restarts: d.health.restarts,
      lastError: d.health.lastError ?? '',
      activeRequests: d.health.activeRequests,
      workerPid: d.health.workerPid ?? 0,
    },
    scheduling: SCHEDULING[d.scheduling],
    cores: d.cores ?? 0,
    logicalCores: d.logicalCores ?? 0,
  };
}
