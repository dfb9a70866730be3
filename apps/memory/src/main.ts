import { config, telemetry } from './register';
import { MemoryMonitor, memoryService } from '@dops/memory';
import { runMain, runWorkerService } from '@dops/service-host';

runMain('memory', () =>
  runWorkerService({
    name: 'memory',
    config,
    telemetry,
    services: (pool) => {
      const thresholds = { high: config.memory.highPressure, critical: config.memory.criticalPressure };
      return [memoryService(new MemoryMonitor(pool, { thresholds }), config.memory.watchIntervalMs)];
    },
  }),
);
