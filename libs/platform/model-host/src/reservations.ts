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

/**
 * Reserve → carry out the eviction plan (each victim through `evict`) → reserve again, up to
 * `rounds` times. Resolves once granted; throws RESOURCE_EXHAUSTED after the last round.
 */
export async function reserveWithEvictions(
  reservations: Reservations,
  request: { deviceId: string; bytes: number; modelId: string; purpose: string },
  rounds: number,
  evict: (victim: string) => Promise<void>,
): Promise<void> {
  for (let round = 0; round < rounds; round += 1) {
    const answer = await reservations.reserve(request);
    if ('granted' in answer) return;
    for (const victim of answer.evictionPlan.modelIds) await evict(victim);
  }
  throw new DopsError(
    'RESOURCE_EXHAUSTED',
    `no VRAM on ${request.deviceId} for model ${request.modelId} after ${rounds} eviction rounds`,
    { retryable: true },
  );
}
