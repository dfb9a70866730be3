import { on } from 'node:events';
import { defineService, type ServiceRegistration } from '@dops/grpc-server';
import { deviceV1 } from '@dops/proto';
import type { DeviceChange, DeviceFleet } from './device-fleet';
import { deviceHandlers, type DeviceSource } from './device-handlers';
import { toProtoHostDevice } from './device-proto';

/** A DeviceFleet as a DeviceSource: this service's own worker per device. */
export function fleetSource(fleet: DeviceFleet): DeviceSource {
  const wire = (d: Parameters<typeof toProtoHostDevice>[0]) => toProtoHostDevice(d, fleet.service);
  return {
    list: async () => fleet.list().map(wire),
    get: async (id) => wire(fleet.get(id)),
    cordon: async (id) => wire(fleet.cordon(id)),
    uncordon: async (id) => wire(fleet.uncordon(id)),
    drain: async (id, options) => {
      const { device, drained, running } = await fleet.drain(id, options);
      return { device: wire(device), drained, running };
    },
    reset: async (id, options) => wire(await fleet.reset(id, options)),
    changes: async function* (signal) {
      try {
        for await (const [change] of on(fleet, 'change', { signal }) as AsyncIterable<[DeviceChange]>)
          yield { device: wire(change.device), reason: change.reason };
      } catch (err) {
        if (!signal.aborted) throw err;
      }
    },
  };
}

/**
 * dops.device.v1.DeviceHostService of a worker-owning service: its own worker per device, for
 * the device service of the node. Internal callers only.
 */
export function deviceHostService(
  fleet: DeviceFleet,
): ServiceRegistration<typeof deviceV1.DeviceHostServiceService> {
  return defineService(deviceV1.DeviceHostServiceService, deviceHandlers(fleetSource(fleet)), {
    default: ['internal'],
  });
}
