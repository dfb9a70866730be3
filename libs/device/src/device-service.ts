import { on } from 'node:events';
import { DopsError } from '@dops/errors';
import { defineService, type ServiceRegistration } from '@dops/grpc-server';
import { deviceV1 } from '@dops/proto';
import { parseDeviceId } from '@dops/worker-pool';
import type { DeviceChange, DeviceFleet } from './device-fleet';
import { toProtoDevice } from './device-proto';

const MAX_DRAIN_MS = 3_600_000;

/** Throws INVALID_ARGUMENT naming `device_id` when it is empty or malformed. */
function deviceIdOf(request: { deviceId: string }): string {
  return parseDeviceId(request.deviceId);
}

/** `dops.device.v1.DeviceService` over a DeviceFleet. */
export function deviceService(fleet: DeviceFleet): ServiceRegistration<typeof deviceV1.DeviceServiceService> {
  return defineService(
    deviceV1.DeviceServiceService,
    {
      listDevices: () => ({ devices: fleet.list().map(toProtoDevice) }),
      getDevice: (req) => ({ device: toProtoDevice(fleet.get(deviceIdOf(req))) }),
      cordonDevice: (req) => ({ device: toProtoDevice(fleet.cordon(deviceIdOf(req))) }),
      uncordonDevice: (req) => ({ device: toProtoDevice(fleet.uncordon(deviceIdOf(req))) }),
      drainDevice: async (req, ctx) => {
        const id = deviceIdOf(req);
        if (req.timeoutMs > MAX_DRAIN_MS)
          throw DopsError.invalidArgument('timeout_ms', `must be at most ${MAX_DRAIN_MS}`);
        const untilDeadline = ctx.deadline ? ctx.deadline.getTime() - Date.now() - 50 : MAX_DRAIN_MS;
        const timeoutMs = req.timeoutMs > 0 ? Math.min(req.timeoutMs, untilDeadline) : untilDeadline;
        const { device, drained } = await fleet.drain(id, {
          timeoutMs: Math.max(timeoutMs, 0),
          signal: ctx.signal,
        });
        return { device: toProtoDevice(device), drained };
      },
      resetDevice: async (req) => ({ device: toProtoDevice(await fleet.reset(deviceIdOf(req))) }),
      watchDevices: async function* (_req, ctx) {
        // Subscribe before the snapshot so no change between the two is lost.
        const changes = on(fleet, 'change', { signal: ctx.signal });
        for (const device of fleet.list()) yield { device: toProtoDevice(device), reason: 'initial' };
        try {
          for await (const [change] of changes as AsyncIterable<[DeviceChange]>) {
            yield { device: toProtoDevice(change.device), reason: change.reason };
          }
        } catch (err) {
          if (ctx.signal.aborted) return;
          throw err;
        }
      },
    },
    { default: ['operator', 'internal'] },
  );
}
