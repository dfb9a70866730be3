export { createGrpcServer, GrpcServer } from './grpc-server';
export type { GrpcServerOptions, GrpcServerState, ShutdownHook } from './grpc-server';
export { defineService, serviceNameOf } from './service-handlers';
export type {
  Send,
  ServerStreamHandler,
  ServiceHandlers,
  ServiceRegistration,
  UnaryHandler,
} from './service-handlers';
export type { CallContext } from './call-context';
export { ServiceHealth } from './service-health';
export type { HealthPhase } from './service-health';
export { HEALTH_SERVICE, REFLECTION_SERVICES, createReflectionService } from './reflection';
export { installSignalHandlers } from './signal-handlers';
export type { SignalHandlerOptions } from './signal-handlers';
