import { randomUUID } from 'node:crypto';
import { DopsError } from '@dops/errors';

/** One hold on device memory; a model's reservation lives as long as the model is loaded there. */
export interface Reservation {
  id: string;
  deviceId: string;
  bytes: number;
  /** Empty for working memory not tied to a model. */
  modelId: string;
  purpose: string;
  inUse: boolean;
  createdAt: number;
  lastUsedAt: number;
}

/** Unload these models (least recently used first), then reserve again. */
export interface EvictionPlan {
  modelIds: string[];
  /** Bytes the plan frees. */
  freedBytes: number;
  /** Bytes that must be freed for the request to fit. */
  neededBytes: number;
}

export type ReserveOutcome = { granted: Reservation } | { evictionPlan: EvictionPlan };

export interface ReserveRequest {
  deviceId: string;
  bytes: number;
  modelId?: string;
  purpose?: string;
}

export interface ReservationLedgerOptions {
  /** Reservable bytes of a device (e.g. its total memory less a safety margin); undefined = unknown device. */
  capacityOf: (deviceId: string) => number | undefined;
  /** Default Date.now. */
  now?: () => number;
}

export interface DeviceLedger {
  deviceId: string;
  capacityBytes: number;
  reservedBytes: number;
  reservations: Reservation[];
}

/**
 * The reservation book of this node's devices: grants a request that fits, otherwise answers with
 * an eviction plan over the models not in use, least recently used first. A plan holds nothing:
 * the caller unloads, releases, and asks again. Every returned reservation is a copy.
 */
export class ReservationLedger {
  private readonly byId = new Map<string, Reservation>();
  private readonly now: () => number;

  constructor(private readonly options: ReservationLedgerOptions) {
    this.now = options.now ?? Date.now;
  }

  /**
   * Grants `bytes` on the device, or plans evictions. A model that already holds a reservation
   * on the device has it resized (and touched) instead of getting a second one.
   * Throws INVALID_ARGUMENT naming `device_id` or `bytes`, NOT_FOUND for an unknown device,
   * RESOURCE_EXHAUSTED when even evicting every model not in use cannot make room.
   */
  reserve(request: ReserveRequest): ReserveOutcome {
    const capacity = this.capacity(request.deviceId);
    if (!Number.isSafeInteger(request.bytes) || request.bytes <= 0)
      throw DopsError.invalidArgument('bytes', 'must be a positive integer');
    const modelId = request.modelId ?? '';
    const existing = modelId ? this.find(request.deviceId, modelId) : undefined;
    const held = this.onDevice(request.deviceId).filter((r) => r !== existing);
    const reserved = held.reduce((sum, r) => sum + r.bytes, 0);
    const free = capacity - reserved;
    if (request.bytes <= free) {
      const at = this.now();
      if (existing) {
        existing.bytes = request.bytes;
        existing.lastUsedAt = at;
        if (request.purpose) existing.purpose = request.purpose;
        return { granted: { ...existing } };
      }
      const reservation: Reservation = {
        id: randomUUID(),
        deviceId: request.deviceId,
        bytes: request.bytes,
        modelId,
        purpose: request.purpose ?? '',
        inUse: false,
        createdAt: at,
        lastUsedAt: at,
      };
      this.byId.set(reservation.id, reservation);
      return { granted: { ...reservation } };
    }
    const needed = request.bytes - free;
    // Only models can be evicted (unloading them frees their bytes); working memory cannot.
    const candidates = held
      .filter((r) => r.modelId && !r.inUse)
      .sort((a, b) => a.lastUsedAt - b.lastUsedAt || a.createdAt - b.createdAt);
    const modelIds: string[] = [];
    let freed = 0;
    for (const candidate of candidates) {
      if (freed >= needed) break;
      modelIds.push(candidate.modelId);
      freed += candidate.bytes;
    }
    if (freed < needed) {
      throw new DopsError(
        'RESOURCE_EXHAUSTED',
        `device ${request.deviceId} cannot hold ${request.bytes} bytes: ${capacity} reservable, ${reserved} reserved, ${freed} evictable (models in use are never evicted)`,
        {
          retryable: true,
          metadata: {
            device_id: request.deviceId,
            bytes: String(request.bytes),
            capacity_bytes: String(capacity),
            evictable_bytes: String(freed),
          },
        },
      );
    }
    return { evictionPlan: { modelIds, freedBytes: freed, neededBytes: needed } };
  }

  /** Releases by id, or by device + model. Throws INVALID_ARGUMENT when neither is given, NOT_FOUND. */
  release(selector: { id?: string; deviceId?: string; modelId?: string }): Reservation {
    const reservation = this.select(selector);
    this.byId.delete(reservation.id);
    return { ...reservation };
  }

  /** Marks the model's reservation used now. Throws INVALID_ARGUMENT, NOT_FOUND. */
  touch(deviceId: string, modelId: string): Reservation {
    const reservation = this.select({ deviceId, modelId });
    reservation.lastUsedAt = this.now();
    return { ...reservation };
  }

  /** A model in use is never planned for eviction; marking also touches. Throws INVALID_ARGUMENT, NOT_FOUND. */
  markInUse(deviceId: string, modelId: string, inUse: boolean): Reservation {
    const reservation = this.select({ deviceId, modelId });
    reservation.inUse = inUse;
    reservation.lastUsedAt = this.now();
    return { ...reservation };
  }

  /** Every device that holds reservations (or `deviceId` alone, known or not, when given). */
  list(deviceId?: string): DeviceLedger[] {
    const ids = deviceId ? [deviceId] : [...new Set([...this.byId.values()].map((r) => r.deviceId))].sort();
    return ids.map((id) => {
      const reservations = this.onDevice(id).map((r) => ({ ...r }));
      return {
        deviceId: id,
        capacityBytes: this.options.capacityOf(id) ?? 0,
        reservedBytes: reservations.reduce((sum, r) => sum + r.bytes, 0),
        reservations,
      };
    });
  }

  private capacity(deviceId: string): number {
    if (!deviceId) throw DopsError.invalidArgument('device_id', 'is required');
    const capacity = this.options.capacityOf(deviceId);
    if (capacity === undefined) throw DopsError.notFound('device', deviceId);
    return capacity;
  }

  private onDevice(deviceId: string): Reservation[] {
    return [...this.byId.values()].filter((r) => r.deviceId === deviceId);
  }

  private find(deviceId: string, modelId: string): Reservation | undefined {
    for (const r of this.byId.values()) if (r.deviceId === deviceId && r.modelId === modelId) return r;
    return undefined;
  }

  private select(selector: { id?: string; deviceId?: string; modelId?: string }): Reservation {
    if (selector.id) {
      const reservation = this.byId.get(selector.id);
      if (!reservation) throw DopsError.notFound('reservation', selector.id);
      return reservation;
    }
    if (!selector.deviceId)
      throw DopsError.invalidArgument('device_id', 'is required (or give the reservation id)');
    if (!selector.modelId)
      throw DopsError.invalidArgument('model_id', 'is required (or give the reservation id)');
    const reservation = this.find(selector.deviceId, selector.modelId);
    if (!reservation) throw DopsError.notFound('reservation', `${selector.deviceId}/${selector.modelId}`);
    return reservation;
  }
}
