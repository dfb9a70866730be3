import { DopsError } from '@dops/errors';
import type { memoryV1 } from '@dops/proto';
import { parseDeviceId } from '../device-id';
import { toProtoSnapshot } from './memory-proto';
import type { MemorySource } from './memory-snapshot';

export const MIN_WATCH_INTERVAL_MS = 100;
export const MAX_WATCH_INTERVAL_MS = 600_000;

/**
 * The handlers of dops.memory.v1.MemoryService and MemoryHostService (one set of messages) over
 * a MemorySource: the wire form, device id validation (INVALID_ARGUMENT naming `device_id`), and
 * WatchMemory's interval (0 = `defaultIntervalMs`; else 100..600 000, INVALID_ARGUMENT naming
 * `interval_ms`). A host serves getMemory and cleanupMemory only.
 */
export function memoryHandlers(source: MemorySource, defaultIntervalMs: number) {
  return {
    getMemory: async (
      _req: memoryV1.GetMemoryRequest,
      ctx: { signal: AbortSignal },
    ): Promise<memoryV1.GetMemoryResponse> => ({
      snapshot: toProtoSnapshot(await source.snapshot(ctx.signal)),
    }),
    watchMemory: async function* (
      req: memoryV1.WatchMemoryRequest,
      ctx: { signal: AbortSignal },
    ): AsyncGenerator<memoryV1.WatchMemoryResponse> {
      const interval = req.intervalMs === 0 ? defaultIntervalMs : req.intervalMs;
      if (interval < MIN_WATCH_INTERVAL_MS || interval > MAX_WATCH_INTERVAL_MS) {
        throw DopsError.invalidArgument(
          'interval_ms',
          `must be 0 (default) or ${MIN_WATCH_INTERVAL_MS}..${MAX_WATCH_INTERVAL_MS}, got ${req.intervalMs}`,
        );
      }
      try {
        for await (const snapshot of source.watch(interval, ctx.signal))
          yield { snapshot: toProtoSnapshot(snapshot) };
      } catch (err) {
        if (ctx.signal.aborted) return;
        throw err;
      }
    },
    cleanupMemory: async (req: memoryV1.CleanupMemoryRequest): Promise<memoryV1.CleanupMemoryResponse> =>
      source.cleanup(req.deviceId ? parseDeviceId(req.deviceId) : undefined),
  };
}
