import type { BaseServiceConfig } from '@dops/config';

/**
 * Worker settings for integration tests: the real Python worker on the CPU backend with short
 * heartbeats and stop bounds, so failures surface in seconds.
 */
export function testWorkerConfig(
  overrides: Partial<BaseServiceConfig['worker']> = {},
): BaseServiceConfig['worker'] {
  return {
    python: undefined,
    allowUnsafePickle: false,
    backend: 'cpu',
    handshakeTimeoutMs: 60_000,
    heartbeatIntervalMs: 500,
    heartbeatTimeoutMs: 10_000,
    maxRestarts: 5,
    restartWindowMs: 60_000,
    stopTimeoutMs: 5_000,
    ...overrides,
  };
}
