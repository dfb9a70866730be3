import { defineService, type ServiceRegistration } from '@dops/grpc-server';
import { memoryReservationsV1 } from '@dops/proto';
import type { Reservation, ReservationLedger } from './reservation-ledger';

function toProto(r: Reservation): memoryReservationsV1.Reservation {
  return {
    id: r.id,
    deviceId: r.deviceId,
    bytes: r.bytes,
    modelId: r.modelId,
    purpose: r.purpose,
    inUse: r.inUse,
    createdTime: new Date(r.createdAt),
    lastUsedTime: new Date(r.lastUsedAt),
  };
}

export interface ReservationServiceOptions {
  /**
   * Awaited before each Reserve with its device id, so that the ledger's synchronous capacityOf
   * knows the device (DeviceCapacities.prepare); its rejection fails the call. Default none.
   */
  beforeReserve?: (deviceId: string) => Promise<void>;
}

/** `dops.memory.v1.MemoryReservationService` over a ReservationLedger; errors are the ledger's (and beforeReserve's). */
export function reservationService(
  ledger: ReservationLedger,
  options: ReservationServiceOptions = {},
): ServiceRegistration<typeof memoryReservationsV1.MemoryReservationServiceService> {
  return defineService(
    memoryReservationsV1.MemoryReservationServiceService,
    {
      reserve: async (req) => {
        await options.beforeReserve?.(req.deviceId);
        const outcome = ledger.reserve({
          deviceId: req.deviceId,
          bytes: req.bytes,
          modelId: req.modelId,
          purpose: req.purpose,
        });
        return 'granted' in outcome
          ? { granted: toProto(outcome.granted) }
          : { evictionPlan: outcome.evictionPlan };
      },
      release: (req) => ({
        released: toProto(ledger.release({ id: req.id, deviceId: req.deviceId, modelId: req.modelId })),
      }),
      listReservations: (req) => ({
        devices: ledger
          .list(req.deviceId || undefined)
          .map((d) => ({ ...d, reservations: d.reservations.map(toProto) })),
      }),
      touch: (req) => ({ reservation: toProto(ledger.touch(req.deviceId, req.modelId)) }),
      markInUse: (req) => ({ reservation: toProto(ledger.markInUse(req.deviceId, req.modelId, req.inUse)) }),
    },
    // Services only: inference reserves the loads it decides, the model service an operator's.
    { default: ['internal'] },
  );
}
