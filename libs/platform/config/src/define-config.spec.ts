import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { ConfigError, baseServiceConfig, defineConfig, toEnvName } from './index';

const deviceConfig = defineConfig(
  baseServiceConfig.extend({ device: z.object({ probeOnStart: z.boolean().default(true) }) }),
  {
    name: 'device',
    defaults: {
      telemetry: { serviceName: 'dops-device' },
      security: { caFile: '/tls/ca.crt', certFile: '/tls/device.crt', keyFile: '/tls/device.key' },
    },
  },
);

function tempFile(name: string, text: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'dops-config-')), name);
  writeFileSync(file, text);
  return file;
}

function loadError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('environment names', () => {
  it('join nested keys with _ and turn camelCase into SCREAMING_SNAKE', () => {
    expect(toEnvName('DOPS_', ['grpc', 'port'])).toBe('DOPS_GRPC_PORT');
    expect(toEnvName('DOPS_', ['worker', 'handshakeTimeoutMs'])).toBe('DOPS_WORKER_HANDSHAKE_TIMEOUT_MS');
    expect(toEnvName('DOPS_', ['telemetry', 'otlpEndpoint'])).toBe('DOPS_TELEMETRY_OTLP_ENDPOINT');
  });

  it('lists every leaf with its variable, honouring a pinned name', () => {
    const vars = Object.fromEntries(deviceConfig.leaves.map((l) => [l.path.join('.'), l.envVar]));
    expect(vars['grpc.port']).toBe('DOPS_GRPC_PORT');
    expect(vars['shutdownGraceMs']).toBe('DOPS_SHUTDOWN_GRACE_MS');
    expect(vars['worker.backend']).toBe('DOPS_BACKEND');
    expect(vars['device.probeOnStart']).toBe('DOPS_DEVICE_PROBE_ON_START');
  });
});

describe('loadConfig', () => {
  it('fills every default when nothing is set', () => {
    const config = deviceConfig.load({ env: {} });
    expect(config.grpc).toEqual({ host: '0.0.0.0', port: 50051 });
    expect(config.telemetry).toEqual({ serviceName: 'dops-device', otlpProtocol: 'grpc' });
    expect(config.metrics).toEqual({ enabled: true, host: '127.0.0.1', port: 9450 });
    expect(config.worker.backend).toBe('auto');
    expect(config.device.probeOnStart).toBe(true);
    expect(Object.isFrozen(config.grpc)).toBe(true);
  });

  it('coerces numbers and booleans from the environment', () => {
    const config = deviceConfig.load({
      env: {
        DOPS_GRPC_PORT: '0',
        DOPS_DEVICE_PROBE_ON_START: 'false',
        DOPS_BACKEND: 'cpu',
        DOPS_LOG_LEVEL: 'debug',
      },
    });
    expect(config.grpc.port).toBe(0);
    expect(config.device.probeOnStart).toBe(false);
    expect(config.worker.backend).toBe('cpu');
    expect(config.logLevel).toBe('debug');
  });

  it('layers defaults < file < environment', () => {
    const file = tempFile(
      'device.yaml',
      'grpc:\n  host: 127.0.0.1\n  port: 7000\nshutdownGraceMs: 2500\ntelemetry:\n  serviceName: from-file\n',
    );
    const config = deviceConfig.load({ env: { DOPS_CONFIG_FILE: file, DOPS_GRPC_PORT: '7001' } });
    expect(config.grpc).toEqual({ host: '127.0.0.1', port: 7001 });
    expect(config.shutdownGraceMs).toBe(2500);
    expect(config.telemetry.serviceName).toBe('from-file');
    expect(config.worker.heartbeatIntervalMs).toBe(5000);
  });

  it('reads JSON files and prefers the file option over DOPS_CONFIG_FILE', () => {
    const json = tempFile('device.json', JSON.stringify({ grpc: { port: 6000 } }));
    const config = deviceConfig.load({ file: json, env: { DOPS_CONFIG_FILE: '/nonexistent.yaml' } });
    expect(config.grpc.port).toBe(6000);
  });

  it('treats an empty variable as unset', () => {
    expect(
      deviceConfig.load({ env: { DOPS_GRPC_PORT: '', DOPS_TELEMETRY_OTLP_ENDPOINT: '' } }).grpc.port,
    ).toBe(50051);
  });

  it('lists every bad key with its variable name and reason', () => {
    const file = tempFile('bad.yaml', 'grpc:\n  prot: 1\nworker:\n  maxRestarts: -1\n');
    const err = loadError(() =>
      deviceConfig.load({
        file,
        env: {
          DOPS_GRPC_PORT: 'abc',
          DOPS_SHUTDOWN_GRACE_MS: '1.5',
          DOPS_BACKEND: 'metal',
          DOPS_DEVICE_PROBE_ON_START: 'maybe',
          DOPS_TELEMETRY_OTLP_ENDPOINT: 'not a url',
        },
      }),
    );
    const lines = err.message
      .split('\n')
      .slice(1)
      .map((l) => l.trim());
    expect(lines).toEqual(
      expect.arrayContaining([
        'DOPS_GRPC_PORT: expected integer 0..65535, got "abc"',
        'DOPS_SHUTDOWN_GRACE_MS: expected integer >= 0, got "1.5"',
        'DOPS_BACKEND: expected one of auto|cuda|rocm|directml|cpu, got "metal"',
        'DOPS_DEVICE_PROBE_ON_START: expected boolean (true|false|1|0|yes|no|on|off), got "maybe"',
        'grpc.prot in config file: unknown key',
        'worker.maxRestarts (DOPS_WORKER_MAX_RESTARTS) in config file: expected integer >= 0, got -1',
      ]),
    );
    expect(lines.some((l) => l.startsWith('DOPS_TELEMETRY_OTLP_ENDPOINT: '))).toBe(true);
    expect(err.issues).toHaveLength(7);
    expect(err.issues.find((i) => i.path === 'grpc.port')).toEqual({
      path: 'grpc.port',
      envVar: 'DOPS_GRPC_PORT',
      source: 'env',
      reason: 'expected integer 0..65535, got "abc"',
    });
  });

  it('names a missing required setting', () => {
    const bare = defineConfig(baseServiceConfig, { name: 'bare' });
    const err = loadError(() => bare.load({ env: {} }));
    expect(err.issues).toEqual([
      // TLS is not optional: a service without its certificate files refuses to start.
      ...['caFile', 'certFile', 'keyFile'].map((key) => ({
        path: `security.${key}`,
        envVar: toEnvName('DOPS_', ['security', key]),
        source: 'default',
        reason: 'required',
      })),
      {
        path: 'telemetry.serviceName',
        envVar: 'DOPS_TELEMETRY_SERVICE_NAME',
        source: 'default',
        reason: 'required',
      },
    ]);
  });

  it('reports an unreadable file instead of ignoring it', () => {
    const err = loadError(() => deviceConfig.load({ env: { DOPS_CONFIG_FILE: '/nonexistent/dops.yaml' } }));
    expect(err.issues[0]!.reason).toMatch(/cannot read config file/);
  });
});
