export { NodeDevices, merge } from './node-devices';
export type { DeviceHost, NodeDevicesOptions } from './node-devices';
export { deviceService } from './device-service';
