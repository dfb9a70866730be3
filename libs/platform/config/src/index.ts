export { defineConfig } from './define-config';
export { loadConfigOrExit } from './load-or-exit';
export type { ConfigDefinition, DeepPartial, DefineConfigOptions, LoadConfigOptions } from './define-config';
export { ConfigError, formatIssue } from './config-error';
export type { ConfigIssue, ConfigSource } from './config-error';
export { toEnvName } from './env-name';
export type { ConfigLeaf } from './schema-walk';
export { BACKENDS, LOG_LEVELS, OTLP_PROTOCOLS, baseServiceConfig } from './base-service-config';
export type { BackendName, BaseServiceConfig, LogLevel, OtlpProtocol } from './base-service-config';
