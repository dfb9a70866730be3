import { enumValue } from '@dops/validation';
import { backendV1, memoryV1 } from '@dops/proto';
import type { MemorySnapshot, WorkerMemory } from './memory-monitor';
import type { PressureLevel } from './pressure';

const PRESSURE: Record<PressureLevel, memoryV1.PressureLevel> = {
  ok: memoryV1.PressureLevel.OK,
  high: memoryV1.PressureLevel.HIGH,
  critical: memoryV1.PressureLevel.CRITICAL,
};

function worker(w: WorkerMemory): memoryV1.WorkerMemory {
  return { pid: w.pid, deviceId: w.deviceId, rssBytes: w.rssBytes, deviceUsedBytes: w.deviceUsedBytes };
}

/** The wire form of a snapshot. */
export function toProtoSnapshot(s: MemorySnapshot): memoryV1.MemorySnapshot {
  return {
    system: { ...s.system, pressure: PRESSURE[s.system.pressure] },
    devices: s.devices.map((d) => ({
      deviceId: d.deviceId,
      backend: enumValue(backendV1.Backend, d.backend) ?? backendV1.Backend.UNSPECIFIED,
      totalBytes: d.totalBytes,
      usedBytes: d.usedBytes,
      freeBytes: d.freeBytes,
      workers: d.workers.map(worker),
      source: d.source,
      pressure: PRESSURE[d.pressure],
    })),
    workers: s.workers.map(worker),
  };
}
