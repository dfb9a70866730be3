import { credentials, status, type ClientDuplexStream, type ClientReadableStream } from '@grpc/grpc-js';
import { deviceV1 } from '@dops/proto';
import { call, createClient } from '@dops/grpc-client';
import { startFixtureServer } from './device-fixture';
import { healthClient, reflectionClient, unary } from './grpc-clients';
import { testCredentials } from '@dops/security';

const DEVICE = 'dops.device.v1.DeviceService';

describe('health checking', () => {
  let fixture: Awaited<ReturnType<typeof startFixtureServer>>;
  let health: ReturnType<typeof healthClient>;
  beforeEach(async () => {
    fixture = await startFixtureServer();
    health = healthClient(fixture.address);
  });
  afterEach(async () => {
    health.close();
    await fixture.stop();
  });

  const check = (service: string) =>
    unary<{ status: string }>(health, 'check', { service }).then((r) => r.status);

  it('reports SERVING overall and per service once started', async () => {
    await expect(check('')).resolves.toBe('SERVING');
    await expect(check(DEVICE)).resolves.toBe('SERVING');
    await expect(check('no.such.Service')).rejects.toMatchObject({ code: 5 });
  });

  it('setServing flips the service and the overall status, and Watch sees each change', async () => {
    const watch = health['watch']!({ service: DEVICE }) as ClientReadableStream<{ status: string }>;
    const seen: string[] = [];
    watch.on('data', (m) => seen.push(m.status));
    watch.on('error', () => undefined);
    const waitSeen = async (n: number) => {
      for (let i = 0; i < 200 && seen.length < n; i++) await new Promise((r) => setTimeout(r, 10));
    };
    await waitSeen(1);
    fixture.server.health.setServing(DEVICE, false);
    await expect(check(DEVICE)).resolves.toBe('NOT_SERVING');
    await expect(check('')).resolves.toBe('NOT_SERVING');
    fixture.server.health.setServing(DEVICE, true);
    await expect(check('')).resolves.toBe('SERVING');
    await waitSeen(3);
    expect(seen).toEqual(['SERVING', 'NOT_SERVING', 'SERVING']);
    watch.cancel();
  });

  it('goes NOT_SERVING for watchers when the server shuts down', async () => {
    const watch = health['watch']!({ service: '' }) as ClientReadableStream<{ status: string }>;
    const seen: string[] = [];
    watch.on('data', (m) => seen.push(m.status));
    watch.on('error', () => undefined);
    for (let i = 0; i < 200 && seen.length < 1; i++) await new Promise((r) => setTimeout(r, 10));
    await fixture.stop();
    expect(seen).toEqual(['SERVING', 'NOT_SERVING']);
    expect(fixture.server.state).toBe('stopped');
  });

  it('serves calls through createClient/call while healthy', async () => {
    const client = createClient(deviceV1.DeviceServiceClient, fixture.address, {
      credentials: testCredentials('ops'),
    });
    const reply = await call(client.listDevices, {});
    expect(reply.devices.map((d) => d.id)).toEqual(['cpu:0']);
    client.close();
  });
});

describe('the plaintext health port (for probes that cannot speak TLS)', () => {
  it('answers health in plaintext and nothing else; the main port stays TLS only', async () => {
    const fixture = await startFixtureServer({ healthPort: 0 });
    const plain = credentials.createInsecure();
    const health = healthClient(fixture.server.healthAddress!.replace('0.0.0.0', '127.0.0.1'), plain);
    // The device service over the health port: not served there at all.
    const devices = createClient(deviceV1.DeviceServiceClient, fixture.server.healthAddress!, {
      credentials: plain,
    });
    const plainOnMain = healthClient(fixture.address, plain);
    try {
      await expect(unary<{ status: string }>(health, 'check', { service: '' })).resolves.toEqual({
        status: 'SERVING',
      });
      await expect(call(devices.listDevices, {}, { deadlineMs: 5_000 })).rejects.toMatchObject({
        code: 'UNSUPPORTED', // grpc UNIMPLEMENTED
      });
      await expect(
        unary(plainOnMain, 'check', { service: '' }).catch((e: { code: number }) => e.code),
      ).resolves.toBe(status.UNAVAILABLE);
    } finally {
      health.close();
      devices.close();
      plainOnMain.close();
      await fixture.stop();
    }
  });
});

describe('server reflection', () => {
  type ReflectionResponse = {
    listServicesResponse?: { service: { name: string }[] };
    fileDescriptorResponse?: { fileDescriptorProto: Buffer[] };
    errorResponse?: { errorCode: number; errorMessage: string };
  };

  function ask(address: string, request: object): Promise<ReflectionResponse> {
    const client = reflectionClient(address);
    const stream = client['serverReflectionInfo']!() as ClientDuplexStream<object, ReflectionResponse>;
    return new Promise<ReflectionResponse>((resolve, reject) => {
      stream.on('data', (m) => {
        resolve(m);
        stream.end();
      });
      stream.on('error', reject);
      stream.write(request);
    }).finally(() => client.close());
  }

  it('lists our service, health and reflection, and describes the device service file', async () => {
    const fixture = await startFixtureServer();
    try {
      const list = await ask(fixture.address, { listServices: '' });
      const names = list.listServicesResponse!.service.map((s) => s.name);
      expect(names).toEqual(
        expect.arrayContaining([DEVICE, 'grpc.health.v1.Health', 'grpc.reflection.v1.ServerReflection']),
      );

      const files = await ask(fixture.address, { fileContainingSymbol: DEVICE });
      const protos = files.fileDescriptorResponse!.fileDescriptorProto.map((b) =>
        Buffer.from(b).toString('latin1'),
      );
      expect(
        protos.some((p) => p.includes('dops/device/v1/device.proto') && p.includes('WatchDevices')),
      ).toBe(true);
      // Imports come along, so a client can build every message type.
      expect(protos.some((p) => p.includes('google/protobuf/timestamp.proto'))).toBe(true);

      const health = await ask(fixture.address, { fileContainingSymbol: 'grpc.health.v1.Health' });
      expect(health.fileDescriptorResponse!.fileDescriptorProto.length).toBeGreaterThan(0);
    } finally {
      await fixture.stop();
    }
  });
});
