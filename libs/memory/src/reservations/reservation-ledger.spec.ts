import { call, createClient } from '@dops/grpc-client';
import { memoryReservationsV1 } from '@dops/proto';
import { startTestServer, testCredentials } from '@dops/testing';
import { DopsError } from '@dops/errors';
import { ReservationLedger } from './reservation-ledger';
import { reservationService } from './reservation-service';

const GIB = 1024 ** 3;

function ledgerWithClock(capacity = 10 * GIB) {
  let clock = 1_000;
  const ledger = new ReservationLedger({
    capacityOf: (id) => (id === 'cuda:0' ? capacity : undefined),
    now: () => clock,
  });
  return { ledger, tick: (ms = 1) => (clock += ms) };
}

function granted(outcome: ReturnType<ReservationLedger['reserve']>) {
  if (!('granted' in outcome)) throw new Error(`expected a grant, got ${JSON.stringify(outcome)}`);
  return outcome.granted;
}

describe('ReservationLedger', () => {
  it('grants a request that fits and counts it', () => {
    const { ledger } = ledgerWithClock();
    const r = granted(
      ledger.reserve({ deviceId: 'cuda:0', bytes: 4 * GIB, modelId: 'a', purpose: 'model-load' }),
    );
    expect(r).toMatchObject({
      deviceId: 'cuda:0',
      bytes: 4 * GIB,
      modelId: 'a',
      purpose: 'model-load',
      inUse: false,
    });
    expect(ledger.list()).toEqual([
      expect.objectContaining({ deviceId: 'cuda:0', capacityBytes: 10 * GIB, reservedBytes: 4 * GIB }),
    ]);
    // The same model again resizes its one reservation instead of taking a second.
    const again = granted(ledger.reserve({ deviceId: 'cuda:0', bytes: 5 * GIB, modelId: 'a' }));
    expect(again.id).toBe(r.id);
    expect(ledger.list()[0].reservedBytes).toBe(5 * GIB);
  });

  it('answers with an eviction plan, least recently used first, just big enough', () => {
    const { ledger, tick } = ledgerWithClock();
    for (const id of ['a', 'b', 'c']) {
      granted(ledger.reserve({ deviceId: 'cuda:0', bytes: 3 * GIB, modelId: id }));
      tick();
    }
    ledger.touch('cuda:0', 'a'); // a is now the most recent: b, c, a
    const outcome = ledger.reserve({ deviceId: 'cuda:0', bytes: 6 * GIB, modelId: 'd' });
    expect(outcome).toEqual({
      evictionPlan: { modelIds: ['b', 'c'], freedBytes: 6 * GIB, neededBytes: 5 * GIB },
    });
    // A plan holds nothing: after the caller releases, the same request is granted.
    ledger.release({ deviceId: 'cuda:0', modelId: 'b' });
    ledger.release({ deviceId: 'cuda:0', modelId: 'c' });
    expect(granted(ledger.reserve({ deviceId: 'cuda:0', bytes: 6 * GIB, modelId: 'd' })).modelId).toBe('d');
  });

  it('never plans to evict a model in use, nor working memory', () => {
    const { ledger, tick } = ledgerWithClock();
    granted(ledger.reserve({ deviceId: 'cuda:0', bytes: 3 * GIB, modelId: 'old' }));
    tick();
    granted(ledger.reserve({ deviceId: 'cuda:0', bytes: 2 * GIB, purpose: 'inference' })); // working memory
    tick();
    granted(ledger.reserve({ deviceId: 'cuda:0', bytes: 3 * GIB, modelId: 'newer' }));
    ledger.markInUse('cuda:0', 'old', true);
    const outcome = ledger.reserve({ deviceId: 'cuda:0', bytes: 4 * GIB, modelId: 'x' });
    expect(outcome).toEqual({
      evictionPlan: { modelIds: ['newer'], freedBytes: 3 * GIB, neededBytes: 2 * GIB },
    });
  });

  it('fails RESOURCE_EXHAUSTED when even evicting everything evictable cannot make room', () => {
    const { ledger } = ledgerWithClock();
    granted(ledger.reserve({ deviceId: 'cuda:0', bytes: 6 * GIB, modelId: 'busy' }));
    granted(ledger.reserve({ deviceId: 'cuda:0', bytes: 3 * GIB, modelId: 'idle' }));
    ledger.markInUse('cuda:0', 'busy', true);
    const err = (() => {
      try {
        ledger.reserve({ deviceId: 'cuda:0', bytes: 5 * GIB, modelId: 'big' });
      } catch (e) {
        return e as DopsError;
      }
      throw new Error('expected a throw');
    })();
    expect(err).toBeInstanceOf(DopsError);
    expect(err.code).toBe('RESOURCE_EXHAUSTED');
    expect(() => ledger.reserve({ deviceId: 'cuda:0', bytes: 11 * GIB })).toThrow(
      expect.objectContaining({ code: 'RESOURCE_EXHAUSTED' }),
    );
  });

  it('validates at the edge: device_id, bytes, unknown device, unknown reservation', () => {
    const { ledger } = ledgerWithClock();
    expect(() => ledger.reserve({ deviceId: '', bytes: 1 })).toThrow(
      expect.objectContaining({
        code: 'INVALID_ARGUMENT',
        violations: [expect.objectContaining({ field: 'device_id' })],
      }),
    );
    expect(() => ledger.reserve({ deviceId: 'cuda:0', bytes: 0 })).toThrow(
      expect.objectContaining({
        code: 'INVALID_ARGUMENT',
        violations: [expect.objectContaining({ field: 'bytes' })],
      }),
    );
    expect(() => ledger.reserve({ deviceId: 'cuda:9', bytes: 1 })).toThrow(
      expect.objectContaining({ code: 'NOT_FOUND' }),
    );
    expect(() => ledger.release({ id: 'nope' })).toThrow(expect.objectContaining({ code: 'NOT_FOUND' }));
    expect(() => ledger.touch('cuda:0', '')).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});

describe('MemoryReservationService over gRPC', () => {
  it('grants, plans, marks in use and releases through a real server', async () => {
    const { ledger, tick } = ledgerWithClock(8 * GIB);
    const server = await startTestServer([reservationService(ledger)]);
    const client = createClient(memoryReservationsV1.MemoryReservationServiceClient, server.address, {
      credentials: testCredentials('model', 'mtls'),
    });
    try {
      const a = await call(client.reserve, {
        deviceId: 'cuda:0',
        bytes: 5 * GIB,
        modelId: 'a',
        purpose: 'model-load',
      });
      expect(a.granted).toMatchObject({ modelId: 'a', bytes: 5 * GIB });
      tick();
      const plan = await call(client.reserve, {
        deviceId: 'cuda:0',
        bytes: 4 * GIB,
        modelId: 'b',
        purpose: 'model-load',
      });
      expect(plan.evictionPlan).toEqual({ modelIds: ['a'], freedBytes: 5 * GIB, neededBytes: 1 * GIB });
      await call(client.markInUse, { deviceId: 'cuda:0', modelId: 'a', inUse: true });
      await expect(
        call(client.reserve, { deviceId: 'cuda:0', bytes: 4 * GIB, modelId: 'b', purpose: '' }),
      ).rejects.toMatchObject({ code: 'RESOURCE_EXHAUSTED' });
      const released = await call(client.release, { id: a.granted!.id, deviceId: '', modelId: '' });
      expect(released.released?.id).toBe(a.granted!.id);
      const listed = await call(client.listReservations, { deviceId: 'cuda:0' });
      expect(listed.devices).toEqual([
        expect.objectContaining({ deviceId: 'cuda:0', reservedBytes: 0, reservations: [] }),
      ]);
      await expect(call(client.touch, { deviceId: 'cuda:0', modelId: 'a' })).rejects.toMatchObject({
        code: 'NOT_FOUND',
      });
    } finally {
      client.close();
      await server.stop();
    }
  });
});
