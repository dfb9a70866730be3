import { config, telemetry } from './register';
import { createClient } from '@dops/grpc-client';
import {
  DeviceCapacities,
  memoryService,
  NodeMemory,
  ReservationLedger,
  reservationService,
  splitHostList,
} from '@dops/memory';
import { memoryV1 } from '@dops/proto';
import { serviceClientCredentials } from '@dops/security';
import { runMain, runService } from '@dops/service-host';

runMain('memory', async () => {
  const settings = config.memory;
  // Each worker-owning service of the node answers for its own workers; this service starts none.
  const hosts = splitHostList(settings.hosts).map((address) => ({
    address,
    client: createClient(memoryV1.MemoryHostServiceClient, address, {
      credentials: serviceClientCredentials(config.security),
    }),
  }));
  return runService({
    name: 'memory',
    config,
    telemetry,
    services: (logger) => {
      const node = new NodeMemory(hosts, {
        thresholds: { high: settings.highPressure, critical: settings.criticalPressure },
        logger,
      });
      const capacities = new DeviceCapacities(async () => (await node.snapshot()).devices, {
        reservableFraction: settings.reservableFraction,
      });
      return [
        memoryService(node, settings.watchIntervalMs),
        reservationService(new ReservationLedger({ capacityOf: capacities.capacityOf }), {
          beforeReserve: (deviceId) => capacities.prepare(deviceId),
        }),
      ];
    },
    onShutdown: () => {
      for (const host of hosts) host.client.close();
    },
  });
});
