import { DopsError } from '@dops/errors';
import { backendV1, memoryV1 } from '@dops/proto';
import { enumName, enumValue } from '@dops/validation';
import type { WorkerBackend } from '@dops/worker-supervisor';
import type { PressureLevel } from './memory-pressure';
import type { DeviceMemory, MemorySnapshot, WorkerMemory } from './memory-snapshot';

const BACKENDS: readonly string[] = ['cuda', 'rocm', 'directml', 'cpu'] satisfies WorkerBackend[];
const PRESSURES: readonly string[] = ['ok', 'high', 'critical'] satisfies PressureLevel[];

const protoPressure = (p: PressureLevel) =>
  enumValue(memoryV1.PressureLevel, p) ?? memoryV1.PressureLevel.UNSPECIFIED;

function pressureOf(p: memoryV1.PressureLevel): PressureLevel {
  const name = enumName(memoryV1.PressureLevel, p);
  return name && PRESSURES.includes(name) ? (name as PressureLevel) : 'ok';
}

const protoWorker = (w: WorkerMemory): memoryV1.WorkerMemory => ({
  pid: w.pid,
  deviceId: w.deviceId,
  rssBytes: w.rssBytes,
  deviceUsedBytes: w.deviceUsedBytes,
  service: w.service,
});

const worker = (w: memoryV1.WorkerMemory): WorkerMemory => ({
  pid: w.pid,
  deviceId: w.deviceId,
  rssBytes: w.rssBytes,
  deviceUsedBytes: w.deviceUsedBytes,
  service: w.service,
});

/** The wire form of a snapshot. */
export function toProtoSnapshot(s: MemorySnapshot): memoryV1.MemorySnapshot {
  return {
    system: { ...s.system, pressure: protoPressure(s.system.pressure) },
    devices: s.devices.map((d) => ({
      deviceId: d.deviceId,
      backend: enumValue(backendV1.Backend, d.backend) ?? backendV1.Backend.UNSPECIFIED,
      totalBytes: d.totalBytes,
      usedBytes: d.usedBytes,
      freeBytes: d.freeBytes,
      workers: d.workers.map(protoWorker),
      source: d.source,
      pressure: protoPressure(d.pressure),
    })),
    workers: s.workers.map(protoWorker),
  };
}

/**
 * A snapshot from the wire (a host's GetMemory answer). Throws INTERNAL for a device without a
 * backend dops knows (a host that speaks another version).
 */
export function fromProtoSnapshot(s: memoryV1.MemorySnapshot): MemorySnapshot {
  const system = s.system ?? {
    totalBytes: 0,
    availableBytes: 0,
    workersRssBytes: 0,
    pressure: memoryV1.PressureLevel.UNSPECIFIED,
  };
  return {
    system: { ...system, pressure: pressureOf(system.pressure) },
    devices: s.devices.map((d): DeviceMemory => {
      const backend = enumName(backendV1.Backend, d.backend);
      if (!backend || !BACKENDS.includes(backend))
        throw new DopsError(
          'INTERNAL',
          `device ${d.deviceId} has backend ${d.backend}, which dops does not know`,
        );
      return {
        deviceId: d.deviceId,
        backend: backend as WorkerBackend,
        totalBytes: d.totalBytes,
        usedBytes: d.usedBytes,
        freeBytes: d.freeBytes,
        workers: d.workers.map(worker),
        source: d.source,
        pressure: pressureOf(d.pressure),
      };
    }),
    workers: s.workers.map(worker),
  };
}
