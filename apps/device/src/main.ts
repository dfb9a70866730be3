import { config, telemetry } from './register';
import { NodeDevices, deviceService } from '@dops/device';
import { createClient } from '@dops/grpc-client';
import { deviceV1 } from '@dops/proto';
import { serviceClientCredentials } from '@dops/security';
import { runMain, runService } from '@dops/service-host';

// No worker of its own: the node's devices as inference and postprocessing (their owners) see them.
runMain('device', async () => {
  const credentials = serviceClientCredentials(config.security);
  const hosts = config.device.hosts.map((address) => ({
    address,
    client: createClient(deviceV1.DeviceHostServiceClient, address, { credentials }),
  }));
  await runService({
    name: 'device',
    config,
    telemetry,
    services: (logger) => [
      deviceService(new NodeDevices(hosts, { callTimeoutMs: config.device.hostTimeoutMs, logger })),
    ],
    onShutdown: () => hosts.forEach((h) => h.client.close()),
  });
});
