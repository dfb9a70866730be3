import { deviceV1 } from '@dops/proto';
import { call, createClient, stream } from '@dops/grpc-client';
import { defineService } from '@dops/grpc-server';
import { collect, sleep, startTestServer, waitFor } from './index';
import { testCredentials } from '@dops/security';

const handlers = defineService(
  deviceV1.DeviceServiceService,
  {
    listDevices: async () => ({ devices: [] }),
    getDevice: async (request) => ({ device: deviceV1.Device.fromPartial({ id: request.deviceId }) }),
    cordonDevice: async () => ({}),
    uncordonDevice: async () => ({}),
    drainDevice: async () => ({ drained: true, running: [] }),
    resetDevice: async () => ({}),
    watchDevices: async function* () {
      for (let i = 0; ; i++) {
        yield { reason: `tick ${i}` };
        await sleep(5);
      }
    },
  },
  { default: ['operator'] },
);

describe('testing helpers', () => {
  it('starts a real server on 127.0.0.1 and a free port', async () => {
    const server = await startTestServer([handlers]);
    const client = createClient(deviceV1.DeviceServiceClient, server.address, {
      credentials: testCredentials('ops'),
    });
    expect(server.address).toBe(`127.0.0.1:${server.port}`);
    await expect(call(client.getDevice, { deviceId: 'x' })).resolves.toMatchObject({ device: { id: 'x' } });
    const ticks = await collect(stream(client.watchDevices, {}), 3);
    expect(ticks.map((t) => t.reason)).toEqual(['tick 0', 'tick 1', 'tick 2']);
    await waitFor(() => server.server.inflightCalls === 0);
    client.close();
    await server.stop();
    expect(server.server.state).toBe('stopped');
  });

  it('waitFor resolves to the first truthy value and times out with the description', async () => {
    let n = 0;
    await expect(waitFor(() => (++n >= 3 ? n : 0))).resolves.toBe(3);
    await expect(waitFor(() => false, { timeoutMs: 30, description: 'never' })).rejects.toThrow(
      'waitFor: never not met within 30 ms',
    );
  });

  it('collect takes everything when n is omitted', async () => {
    async function* three() {
      yield* [1, 2, 3];
    }
    await expect(collect(three())).resolves.toEqual([1, 2, 3]);
  });
});
