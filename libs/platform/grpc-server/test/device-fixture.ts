import { deviceV1 } from '@dops/proto';
import { DopsError } from '@dops/errors';
import { createLogger, type Logger } from '@dops/telemetry';
import { createGrpcServer, defineService, type CallContext } from '../src/index';
import { testServerSecurity } from '@dops/security';

/** What the fixture's handlers saw, for tests to assert on. */
export interface Observed {
  contexts: CallContext[];
  aborted: unknown[];
  finished: string[];
}

function device(id: string): deviceV1.Device {
  return { ...deviceV1.Device.fromPartial({ id, name: `fixture ${id}` }) };
}

function untilAborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

/**
 * The real dops.device.v1.DeviceService with test behaviour:
 * GetDevice `bad` → INVALID_ARGUMENT on device_id, `boom` → plain Error, `wait` → waits for ctx.signal;
 * DrainDevice waits `timeoutMs` ignoring the signal; WatchDevices yields one device then waits for cancel.
 */
export function deviceFixture(observed: Observed = { contexts: [], aborted: [], finished: [] }) {
  const registration = defineService(
    deviceV1.DeviceServiceService,
    {
      listDevices: async () => ({ devices: [device('cpu:0')] }),
      getDevice: async (request, ctx) => {
        observed.contexts.push(ctx);
        if (request.deviceId === 'bad') throw DopsError.invalidArgument('device_id', 'must name a device');
        if (request.deviceId === 'boom') throw new Error('kaboom');
        if (request.deviceId === 'wait') {
          await untilAborted(ctx.signal);
          observed.aborted.push(ctx.signal.reason);
          throw ctx.signal.reason;
        }
        return { device: device(request.deviceId) };
      },
      cordonDevice: async (request) => ({ device: device(request.deviceId) }),
      uncordonDevice: async (request) => ({ device: device(request.deviceId) }),
      drainDevice: async (request, ctx) => {
        observed.contexts.push(ctx);
        ctx.signal.addEventListener('abort', () => observed.aborted.push(ctx.signal.reason));
        await new Promise((resolve) => setTimeout(resolve, request.timeoutMs));
        observed.finished.push(request.deviceId);
        return { device: device(request.deviceId), drained: true, running: [] };
      },
      resetDevice: async (request) => ({ device: device(request.deviceId) }),
      watchDevices: async function* (_request, ctx) {
        observed.contexts.push(ctx);
        try {
          yield { device: device('cpu:0'), reason: 'initial' };
          await untilAborted(ctx.signal);
          observed.aborted.push(ctx.signal.reason);
        } finally {
          observed.finished.push('watch');
        }
      },
    },
    { default: ['operator'] },
  );
  return { registration, observed };
}

/** A real server on 127.0.0.1:0 serving the fixture; `stop()` shuts it down. */
export async function startFixtureServer(
  options: { shutdownGraceMs?: number; logger?: Logger; healthPort?: number } = {},
) {
  const { registration, observed } = deviceFixture();
  const server = createGrpcServer({
    name: 'fixture',
    security: testServerSecurity(),
    logger: options.logger ?? createLogger({ name: 'fixture', level: 'silent' }),
    services: [registration],
    host: '127.0.0.1',
    port: 0,
    shutdownGraceMs: options.shutdownGraceMs ?? 1_000,
    healthPort: options.healthPort,
  });
  const port = await server.start();
  return { server, observed, address: `127.0.0.1:${port}`, stop: () => server.shutdown() };
}
