export { DeviceFleet } from './device-fleet';
export type {
  ChangeReason,
  DeviceChange,
  DeviceHealthView,
  DeviceView,
  DrainOptions,
  SchedulingState,
} from './device-fleet';
export { toProtoDevice } from './device-proto';
export { deviceService } from './device-service';
