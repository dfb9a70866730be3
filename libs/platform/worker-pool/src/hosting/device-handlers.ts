import { DopsError } from '@dops/errors';
import type { deviceV1 } from '@dops/proto';
import { parseDeviceId } from '../device-id';

const MAX_DRAIN_MS = 3_600_000;

/** What the device calls act on: one service's own workers (a host) or the node's, merged. */
export interface DeviceSource {
  list(): Promise<deviceV1.Device[]>;
  /** NOT_FOUND for an unknown id. */
  get(deviceId: string): Promise<deviceV1.Device>;
  cordon(deviceId: string): Promise<deviceV1.Device>;
  uncordon(deviceId: string): Promise<deviceV1.Device>;
  drain(
    deviceId: string,
    options: { timeoutMs: number; signal: AbortSignal },
  ): Promise<{ device: deviceV1.Device; drained: boolean; running: string[] }>;
  reset(deviceId: string, options: { force: boolean; drainTimeoutMs?: number }): Promise<deviceV1.Device>;
  /** Every change from now on, as `{device, reason}`, until `signal` aborts. */
  changes(signal: AbortSignal): AsyncIterable<deviceV1.WatchDevicesResponse>;
}

/** Throws INVALID_ARGUMENT naming `device_id` when it is empty or malformed. */
function deviceIdOf(request: { deviceId: string }): string {
  return parseDeviceId(request.deviceId);
}

/**
 * The handlers of dops.device.v1.DeviceService and DeviceHostService (one set of messages) over
 * a DeviceSource: validation of ids and drain timeouts, the drain bounded by the call's deadline,
 * and WatchDevices as the snapshot followed by every change.
 */
export function deviceHandlers(source: DeviceSource) {
  return {
    listDevices: async () => ({ devices: await source.list() }),
    getDevice: async (req: deviceV1.GetDeviceRequest) => ({ device: await source.get(deviceIdOf(req)) }),
    cordonDevice: async (req: deviceV1.CordonDeviceRequest) => ({
      device: await source.cordon(deviceIdOf(req)),
    }),
    uncordonDevice: async (req: deviceV1.UncordonDeviceRequest) => ({
      device: await source.uncordon(deviceIdOf(req)),
    }),
    drainDevice: async (req: deviceV1.DrainDeviceRequest, ctx: { deadline?: Date; signal: AbortSignal }) => {
      const id = deviceIdOf(req);
      if (req.timeoutMs > MAX_DRAIN_MS)
        throw DopsError.invalidArgument('timeout_ms', `must be at most ${MAX_DRAIN_MS}`);
      const untilDeadline = ctx.deadline ? ctx.deadline.getTime() - Date.now() - 50 : MAX_DRAIN_MS;
      const timeoutMs = req.timeoutMs > 0 ? Math.min(req.timeoutMs, untilDeadline) : untilDeadline;
      return source.drain(id, { timeoutMs: Math.max(timeoutMs, 0), signal: ctx.signal });
    },
    resetDevice: async (req: deviceV1.ResetDeviceRequest) => {
      if (req.drainTimeoutMs > MAX_DRAIN_MS)
        throw DopsError.invalidArgument('drain_timeout_ms', `must be at most ${MAX_DRAIN_MS}`);
      return {
        device: await source.reset(deviceIdOf(req), {
          force: req.force,
          drainTimeoutMs: req.drainTimeoutMs || undefined,
        }),
      };
    },
    watchDevices: async function* (
      _req: deviceV1.WatchDevicesRequest,
      ctx: { signal: AbortSignal },
    ): AsyncGenerator<deviceV1.WatchDevicesResponse> {
      // Subscribe before the snapshot so no change between the two is lost.
      const changes = source.changes(ctx.signal);
      const iterator = changes[Symbol.asyncIterator]();
      for (const device of await source.list()) yield { device, reason: 'initial' };
      try {
        for (;;) {
          const next = await iterator.next();
          if (next.done) return;
          yield next.value;
        }
      } catch (err) {
        if (ctx.signal.aborted) return;
        throw err;
      }
    },
  };
}
