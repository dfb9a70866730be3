import { DopsError } from '@dops/errors';
import { defineService, type ServiceRegistration } from '@dops/grpc-server';
import { memoryV1 } from '@dops/proto';
import { parseDeviceId } from '@dops/worker-pool';
import type { MemoryMonitor } from './memory-monitor';
import { toProtoSnapshot } from './memory-proto';

export const MIN_WATCH_INTERVAL_MS = 100;
export const MAX_WATCH_INTERVAL_MS = 600_000;

/** `dops.memory.v1.MemoryService` over a MemoryMonitor; `defaultIntervalMs` serves interval_ms = 0. */
export function memoryService(
  monitor: MemoryMonitor,
  defaultIntervalMs: number,
): ServiceRegistration<typeof memoryV1.MemoryServiceService> {
  return defineService(
    memoryV1.MemoryServiceService,
    {
      getMemory: async (_req, ctx) => ({ snapshot: toProtoSnapshot(await monitor.snapshot(ctx.signal)) }),
      watchMemory: async function* (req, ctx) {
        const interval = req.intervalMs === 0 ? defaultIntervalMs : req.intervalMs;
        if (interval < MIN_WATCH_INTERVAL_MS || interval > MAX_WATCH_INTERVAL_MS) {
          throw DopsError.invalidArgument(
            'interval_ms',
            `must be 0 (default) or ${MIN_WATCH_INTERVAL_MS}..${MAX_WATCH_INTERVAL_MS}, got ${req.intervalMs}`,
          );
        }
        try {
          for await (const snapshot of monitor.watch(interval, ctx.signal))
            yield { snapshot: toProtoSnapshot(snapshot) };
        } catch (err) {
          if (ctx.signal.aborted) return;
          throw err;
        }
      },
      cleanupMemory: async (req) => {
        const r = await monitor.cleanup(req.deviceId ? parseDeviceId(req.deviceId) : undefined);
        return { freedBytes: r.freedBytes, devices: r.devices };
      },
    },
    { default: ['operator', 'internal'] },
  );
}
