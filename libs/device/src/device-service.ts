import { defineService, type ServiceRegistration } from '@dops/grpc-server';
import { deviceV1 } from '@dops/proto';
import { deviceHandlers, type DeviceSource } from '@dops/worker-pool';

/** `dops.device.v1.DeviceService` over the node's devices (NodeDevices). */
export function deviceService(
  source: DeviceSource,
): ServiceRegistration<typeof deviceV1.DeviceServiceService> {
  return defineService(deviceV1.DeviceServiceService, deviceHandlers(source), {
    default: ['operator', 'internal'],
  });
}
