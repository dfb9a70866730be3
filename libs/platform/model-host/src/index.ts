export { ModelHost } from './model-host';
export type { HostLoadOptions, HostLoadResult, HostTier, ResidentOnHost } from './model-host';
export { modelHostService } from './model-host-service';
export type { ModelHostServiceOptions } from './model-host-service';
export { GrpcReservations, reserveWithEvictions } from './reservations';
export type { Reservations, ReserveAnswer } from './reservations';
export { loadPaths } from './load-paths';
export type { HostRoots } from './load-paths';
