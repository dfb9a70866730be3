import { Writable } from 'node:stream';
import { DopsError } from '@dops/errors';
import { call, createClient, stream } from '@dops/grpc-client';
import { deviceV1 } from '@dops/proto';
import { createLogger } from '@dops/telemetry';
import { startFixtureServer } from './device-fixture';
import { testCredentials } from '@dops/security';

async function until(predicate: () => boolean, timeoutMs = 3_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function rejection(promise: Promise<unknown>): Promise<DopsError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof DopsError) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

describe('handlers', () => {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk, _enc, done) {
      lines.push(JSON.parse(String(chunk)));
      done();
    },
  });
  let fixture: Awaited<ReturnType<typeof startFixtureServer>>;
  let client: deviceV1.DeviceServiceClient;
  beforeEach(async () => {
    lines.length = 0;
    fixture = await startFixtureServer({
      logger: createLogger({ name: 'fixture', level: 'info', destination }),
    });
    client = createClient(deviceV1.DeviceServiceClient, fixture.address, {
      deadlineMs: 5_000,
      credentials: testCredentials('ops'),
    });
  });
  afterEach(async () => {
    client.close();
    await fixture.stop();
  });

  it('answers a unary call and logs method, code, duration and peer', async () => {
    const reply = await call(client.getDevice, { deviceId: 'cpu:0' });
    expect(reply.device?.id).toBe('cpu:0');
    expect(lines.find((l) => l['msg'] === 'rpc finished')).toMatchObject({
      method: '/dops.device.v1.DeviceService/GetDevice',
      code: 'OK',
      duration_ms: expect.any(Number),
      peer: expect.stringContaining('127.0.0.1'),
    });
  });

  it('maps a thrown DopsError to INVALID_ARGUMENT with a BadRequest naming the field', async () => {
    const err = await rejection(call(client.getDevice, { deviceId: 'bad' }));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.violations).toEqual([{ field: 'device_id', description: 'must name a device' }]);
    expect((err.cause as { code: number }).code).toBe(3);
    expect(lines.find((l) => l['msg'] === 'rpc failed')).toMatchObject({
      code: 'INVALID_ARGUMENT',
      error_code: 'INVALID_ARGUMENT',
    });
  });

  it('maps any other error to INTERNAL, not retryable, and logs it as an error', async () => {
    const err = await rejection(call(client.getDevice, { deviceId: 'boom' }));
    expect(err.code).toBe('INTERNAL');
    expect(err.retryable).toBe(false);
    expect(err.message).toBe('kaboom');
    expect(lines.find((l) => l['msg'] === 'rpc failed')).toMatchObject({ level: 'error', code: 'INTERNAL' });
  });

  it('shows the handler its deadline and aborts ctx.signal when it passes', async () => {
    const before = Date.now();
    const err = await rejection(call(client.getDevice, { deviceId: 'wait' }, { deadlineMs: 300 }));
    expect(err.code).toBe('DEADLINE_EXCEEDED');
    await until(() => fixture.observed.aborted.length === 1);
    const ctx = fixture.observed.contexts[0]!;
    expect(ctx.deadline).toBeInstanceOf(Date);
    expect(ctx.deadline!.getTime()).toBeGreaterThanOrEqual(before + 250);
    expect(ctx.deadline!.getTime()).toBeLessThanOrEqual(Date.now() + 50);
    expect(ctx.signal.aborted).toBe(true);
    expect((fixture.observed.aborted[0] as DopsError).code).toBe('DEADLINE_EXCEEDED');
  });

  it('has no deadline when the client sets none, and carries the caller traceparent', async () => {
    const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const { Metadata } = await import('@grpc/grpc-js');
    const metadata = new Metadata();
    metadata.set('traceparent', traceparent);
    await new Promise<void>((resolve, reject) =>
      client.getDevice({ deviceId: 'cpu:0' }, metadata, (err) => (err ? reject(err) : resolve())),
    );
    const ctx = fixture.observed.contexts[0]!;
    expect(ctx.deadline).toBeUndefined();
    expect(ctx.traceparent).toBe(traceparent);
    expect(ctx.signal.aborted).toBe(false);
  });

  it('aborts ctx.signal and ends the generator when the client cancels a unary call', async () => {
    const controller = new AbortController();
    const pending = rejection(call(client.getDevice, { deviceId: 'wait' }, { signal: controller.signal }));
    await until(() => fixture.observed.contexts.length === 1);
    controller.abort();
    expect((await pending).code).toBe('CANCELLED');
    await until(() => fixture.observed.aborted.length === 1);
    expect((fixture.observed.aborted[0] as DopsError).code).toBe('CANCELLED');
  });

  it('streams, and a client cancel (break) aborts ctx.signal and finishes the generator', async () => {
    const received: string[] = [];
    for await (const message of stream(client.watchDevices, {})) {
      received.push(message.reason);
      break; // stream() cancels the call when the loop stops early
    }
    expect(received).toEqual(['initial']);
    await until(() => fixture.observed.finished.includes('watch'));
    expect((fixture.observed.aborted[0] as DopsError).code).toBe('CANCELLED');
    expect(fixture.server.inflightCalls).toBe(0);
  });
});

describe('graceful shutdown', () => {
  it('lets an in-flight call finish within the grace period', async () => {
    const fixture = await startFixtureServer({ shutdownGraceMs: 2_000 });
    const client = createClient(deviceV1.DeviceServiceClient, fixture.address, {
      credentials: testCredentials('ops'),
    });
    const hookCalls: string[] = [];
    fixture.server.onShutdown(() => {
      hookCalls.push(`hook after ${fixture.observed.finished.join(',')}`);
    });
    const pending = call(client.drainDevice, { deviceId: 'slow', timeoutMs: 300 });
    await until(() => fixture.server.inflightCalls === 1);
    const started = Date.now();
    await fixture.server.shutdown();
    expect(Date.now() - started).toBeLessThan(1_500);
    await expect(pending).resolves.toMatchObject({ drained: true, running: [] });
    expect(hookCalls).toEqual(['hook after slow']);
    expect(fixture.observed.aborted).toEqual([]);
    // New calls are refused once shutdown began.
    await expect(call(client.listDevices, {}, { deadlineMs: 1_000 })).rejects.toBeInstanceOf(DopsError);
    client.close();
  });

  it('cancels a call still running after the grace period and closes the transport', async () => {
    const fixture = await startFixtureServer({ shutdownGraceMs: 200 });
    const client = createClient(deviceV1.DeviceServiceClient, fixture.address, {
      credentials: testCredentials('ops'),
    });
    const pending = rejection(call(client.drainDevice, { deviceId: 'stuck', timeoutMs: 5_000 }));
    await until(() => fixture.server.inflightCalls === 1);
    const started = Date.now();
    await fixture.server.shutdown();
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(190);
    expect(took).toBeLessThan(1_500);
    expect(['UNAVAILABLE', 'CANCELLED', 'INTERNAL']).toContain((await pending).code);
    expect((fixture.observed.aborted[0] as DopsError).code).toBe('UNAVAILABLE');
    expect(fixture.server.state).toBe('stopped');
    client.close();
  });
});
