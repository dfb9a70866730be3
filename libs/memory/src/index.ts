export { memoryService } from './memory-service';
export { NodeMemory, splitHostList } from './node-memory';
export type { MemoryHost, NodeMemoryLogger, NodeMemoryOptions } from './node-memory';
export { readSystemMemory } from './system-memory';
export type { SystemRam } from './system-memory';
export { DeviceCapacities } from './reservations/device-capacities';
export type { DeviceCapacitiesOptions } from './reservations/device-capacities';
export { ReservationLedger } from './reservations/reservation-ledger';
export type {
  DeviceLedger,
  EvictionPlan,
  Reservation,
  ReservationLedgerOptions,
  ReserveOutcome,
  ReserveRequest,
} from './reservations/reservation-ledger';
export { reservationService } from './reservations/reservation-service';
export type { ReservationServiceOptions } from './reservations/reservation-service';
