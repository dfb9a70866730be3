import { enumValue } from '@dops/validation';
import { backendV1, deviceV1 } from '@dops/proto';
import type { WorkerState } from '@dops/worker-supervisor';
import type { DeviceHealthView, DeviceView, SchedulingState } from './device-fleet';

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
    health: toProtoHealth(d.health),
    scheduling: SCHEDULING[d.scheduling],
    cores: d.cores ?? 0,
    logicalCores: d.logicalCores ?? 0,
    workers: [],
  };
}

/** A host's own view of a device: the device with its one worker listed under `service`. */
export function toProtoHostDevice(d: DeviceView, service: string): deviceV1.Device {
  const device = toProtoDevice(d);
  return { ...device, workers: [{ service, health: device.health, scheduling: device.scheduling }] };
}

function toProtoHealth(h: DeviceHealthView): deviceV1.DeviceHealth {
  return {
    workerState: WORKER_STATE[h.workerState],
    lastHeartbeatTime: h.lastHeartbeatAt === undefined ? undefined : new Date(h.lastHeartbeatAt),
    restarts: h.restarts,
    lastError: h.lastError ?? '',
    activeRequests: h.activeRequests,
    workerPid: h.workerPid ?? 0,
  };
}
