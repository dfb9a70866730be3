import { config, telemetry } from './register';
import { MemoryMonitor, memoryService, ReservationLedger, reservationService } from '@dops/memory';
import { runMain, runWorkerService } from '@dops/service-host';

runMain('memory', () =>
  runWorkerService({
    name: 'memory',
    config,
    telemetry,
    services: (pool) => {
      const thresholds = { high: config.memory.highPressure, critical: config.memory.criticalPressure };
      const capacityOf = (deviceId: string) => {
        const device = pool.list().find((w) => w.device.id === deviceId)?.device;
        return device && Math.floor(device.totalMemoryBytes * config.memory.reservableFraction);
      };
      return [
        memoryService(new MemoryMonitor(pool, { thresholds }), config.memory.watchIntervalMs),
        reservationService(new ReservationLedger({ capacityOf })),
      ];
    },
  }),
);
