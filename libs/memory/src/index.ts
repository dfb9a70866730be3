export { MemoryMonitor } from './memory-monitor';
export type {
  DeviceCleanup,
  DeviceMemory,
  MemoryMonitorOptions,
  MemorySnapshot,
  WorkerMemory,
} from './memory-monitor';
export { toProtoSnapshot } from './memory-proto';
export { MAX_WATCH_INTERVAL_MS, MIN_WATCH_INTERVAL_MS, memoryService } from './memory-service';
export { DEFAULT_THRESHOLDS, pressureOf, validateThresholds } from './pressure';
export type { PressureLevel, PressureThresholds } from './pressure';
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
