import { config, telemetry } from './register';
import { DeviceFleet, deviceService } from '@dops/device';
import { runMain, runWorkerService } from '@dops/service-host';

runMain('device', () =>
  runWorkerService({
    name: 'device',
    config,
    telemetry,
    services: (pool) => [deviceService(new DeviceFleet(pool))],
  }),
);
