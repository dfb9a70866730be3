import type { ChannelCredentials } from '@grpc/grpc-js';
import { DopsError } from '@dops/errors';
import { call, createClient } from '@dops/grpc-client';
import { memoryReservationsV1 } from '@dops/proto';

/** The memory service's answer to a Reserve: a grant, or the models to unload before asking again. */
export type ReserveAnswer = { granted: { id: string } } | { evictionPlan: { modelIds: string[] } };

/** The memory service's reservation book, as a loader of models uses it. */
export interface Reservations {
  /** Rejects RESOURCE_EXHAUSTED when nothing can make room, NOT_FOUND for a device the memory service does not know. */
  reserve(request: {
    deviceId: string;
    bytes: number;
    modelId: string;
    purpose: string;
  }): Promise<ReserveAnswer>;
  /** Resolves whether or not a reservation existed. */
  release(request: { deviceId: string; modelId: string }): Promise<void>;
  /** Counts as a use of the model's reservation now (eviction plans take the least recently used first). Resolves whether or not it existed. */
  touch(request: { deviceId: string; modelId: string }): Promise<void>;
  close(): void;
}

/** Reservations over `dops.memory.v1.MemoryReservationService`. */
export class GrpcReservations implements Reservations {
  private readonly client: memoryReservationsV1.MemoryReservationServiceClient;

  /** `credentials`: this service's own mTLS identity (reservations admit `internal` only). */
  constructor(address: string, credentials: ChannelCredentials) {
    this.client = createClient(memoryReservationsV1.MemoryReservationServiceClient, address, { credentials });
  }

  async reserve(request: {
    deviceId: string;
    bytes: number;
    modelId: string;
    purpose: string;
  }): Promise<ReserveAnswer> {
    const res = await call(this.client.reserve, request);
    if (res.granted) return { granted: { id: res.granted.id } };
    if (res.evictionPlan) return { evictionPlan: { modelIds: res.evictionPlan.modelIds } };
    throw new DopsError('INTERNAL', 'memory service answered Reserve with neither a grant nor a plan');
  }

  async release(request: { deviceId: string; modelId: string }): Promise<void> {
    try {
      await call(this.client.release, { id: '', ...request });
    } catch (err) {
      if (!(err instanceof DopsError && err.code === 'NOT_FOUND')) throw err;
    }
  }

  async touch(request: { deviceId: string; modelId: string }): Promise<void> {
    try {
      await call(this.client.touch, request);
    } catch (err) {
      if (!(err instanceof DopsError && err.code === 'NOT_FOUND')) throw err;
    }
  }

  close(): void {
    this.client.close();
  }
}
