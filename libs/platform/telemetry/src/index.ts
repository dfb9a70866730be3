export { createLogger } from './logger';
export type { Logger, LoggerOptions } from './logger';
export { startTelemetry } from './start-telemetry';
export type { OtlpProtocol, Telemetry, TelemetryOptions } from './start-telemetry';
export { contextFromTraceparent, currentTraceparent, withSpan } from './trace-context';
export { ECHO_LIMIT, truncateEcho } from './truncate';
