import { DopsError } from '@dops/errors';
import { deviceV1 } from '@dops/proto';
import { call, createClient, stream } from './index';
import { testCredentials } from '@dops/security';

// Port 1 on loopback: nothing listens there, so every call fails fast with UNAVAILABLE.
const NOWHERE = '127.0.0.1:1';

describe('grpc-client without a server', () => {
  const client = createClient(deviceV1.DeviceServiceClient, NOWHERE, {
    deadlineMs: 2_000,
    credentials: testCredentials('ops'),
  });
  afterAll(() => client.close());

  it('binds service methods so they can be passed around', () => {
    const { getDevice } = client;
    expect(typeof getDevice).toBe('function');
    expect(getDevice).not.toBe(deviceV1.DeviceServiceClient.prototype.getDevice);
  });

  it('rejects a unary call with a retryable UNAVAILABLE DopsError', async () => {
    const err = await call(client.getDevice, { deviceId: 'x' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DopsError);
    expect(err).toMatchObject({ code: 'UNAVAILABLE', retryable: true });
  });

  it('rejects at once when the signal is already aborted', async () => {
    await expect(
      call(client.getDevice, { deviceId: 'x' }, { signal: AbortSignal.abort() }),
    ).rejects.toMatchObject({ code: 'CANCELLED' });
  });

  it('throws a DopsError from a failed stream', async () => {
    const err = await (async () => {
      for await (const _ of stream(client.watchDevices, {})) throw new Error('no message expected');
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DopsError);
    expect(err).toMatchObject({ code: 'UNAVAILABLE' });
  });
});
