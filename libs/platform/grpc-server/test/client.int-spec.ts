import { DopsError } from '@dops/errors';
import { call, createClient, stream } from '@dops/grpc-client';
import { deviceV1 } from '@dops/proto';
import { createLogger } from '@dops/telemetry';
import { createGrpcServer, defineService, type GrpcServer } from '../src/index';
import { testCredentials, testServerSecurity } from '@dops/security';

// @dops/testing builds on this package, so these tests start their server by hand.
async function waitFor(predicate: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !predicate(); i++) await new Promise((r) => setTimeout(r, 10));
  if (!predicate()) throw new Error('condition not met in time');
}

async function collect<T>(source: AsyncIterable<T>, n: number): Promise<T[]> {
  const items: T[] = [];
  for await (const item of source) {
    items.push(item);
    if (items.length >= n) break;
  }
  return items;
}

let cancelled = 0;
const service = defineService(
  deviceV1.DeviceServiceService,
  {
    listDevices: async () => ({ devices: [] }),
    getDevice: async (request, ctx) => {
      if (request.deviceId === 'missing') throw DopsError.notFound('device', 'missing');
      if (request.deviceId === 'slow') await new Promise((r) => setTimeout(r, 1_000));
      return {
        device: deviceV1.Device.fromPartial({
          id: request.deviceId,
          name: ctx.deadline ? 'has deadline' : 'no deadline',
        }),
      };
    },
    cordonDevice: async () => ({}),
    uncordonDevice: async () => ({}),
    drainDevice: async () => ({ drained: true, running: [] }),
    resetDevice: async () => ({}),
    watchDevices: async (_request, ctx, send) => {
      await send({ reason: 'initial' });
      if (ctx.metadata.get('fail')[0] === 'yes') throw DopsError.unavailable('worker crashed');
      await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve()));
      cancelled++;
    },
  },
  { default: ['operator'] },
);

describe('grpc-client against a real server', () => {
  let server: GrpcServer;
  let client: deviceV1.DeviceServiceClient;
  beforeAll(async () => {
    const logger = createLogger({ name: 'client-test', level: 'silent' });
    server = createGrpcServer({
      name: 'client-test',
      security: testServerSecurity(),
      logger,
      services: [service],
      host: '127.0.0.1',
      port: 0,
    });
    const port = await server.start();
    client = createClient(deviceV1.DeviceServiceClient, `127.0.0.1:${port}`, {
      deadlineMs: 300,
      credentials: testCredentials('ops'),
    });
  });
  afterAll(async () => {
    client.close();
    await server.shutdown();
  });

  it('applies the client default deadline to unary calls', async () => {
    await expect(call(client.getDevice, { deviceId: 'a' })).resolves.toMatchObject({
      device: { name: 'has deadline' },
    });
    await expect(call(client.getDevice, { deviceId: 'slow' })).rejects.toMatchObject({
      code: 'DEADLINE_EXCEEDED',
    });
  });

  it('rejects with the DopsError the server threw', async () => {
    const err = await call(client.getDevice, { deviceId: 'missing' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DopsError);
    expect(err).toMatchObject({ code: 'NOT_FOUND', metadata: { device: 'missing' } });
  });

  it('rejects at once for an already aborted signal', async () => {
    await expect(
      call(client.getDevice, { deviceId: 'a' }, { signal: AbortSignal.abort() }),
    ).rejects.toMatchObject({ code: 'CANCELLED' });
  });

  it('streams until aborted, and the server sees the cancel', async () => {
    const controller = new AbortController();
    const received: string[] = [];
    const consume = (async () => {
      for await (const m of stream(client.watchDevices, {}, { signal: controller.signal }))
        received.push(m.reason);
    })();
    await waitFor(() => received.length === 1);
    controller.abort();
    await expect(consume).rejects.toMatchObject({ code: 'CANCELLED' });
    await waitFor(() => cancelled === 1);
  });

  it('throws a stream failure as a DopsError after the messages before it', async () => {
    const { Metadata } = await import('@grpc/grpc-js');
    const metadata = new Metadata();
    metadata.set('fail', 'yes');
    const received: string[] = [];
    const err = await (async () => {
      for await (const m of stream(client.watchDevices, {}, { metadata })) received.push(m.reason);
    })().catch((e: unknown) => e);
    expect(received).toEqual(['initial']);
    expect(err).toMatchObject({ code: 'UNAVAILABLE', retryable: true, message: 'worker crashed' });
  });

  it('collects n messages and cancels the rest', async () => {
    await expect(collect(stream(client.watchDevices, {}), 1)).resolves.toEqual([
      { device: undefined, reason: 'initial' },
    ]);
  });
});
