import { baseServiceConfig, defineConfig } from '@dops/config';

/** The device service's settings: the base service settings; gRPC port 50051 by default. */
export const deviceConfig = defineConfig(baseServiceConfig, {
  name: 'device',
  defaults: { grpc: { port: 50051 }, telemetry: { serviceName: 'dops-device' } },
});
