import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { ROOT } from './kubernetes';
import type { Container, Workload } from './workload';

/** The compose file. */
export const COMPOSE_FILE = path.join(ROOT, 'deploy/docker-compose.yml');
/** compose-config (tools/deploy/compose-config), built once into var/ (ignored; a second run reuses it). */
export const COMPOSE_CONFIG_BIN = path.join(ROOT, 'var/tools/bin/compose-config');

/** Builds compose-config with the Go toolchain when var/ lacks it (about 15 s, modules from the Go proxy). */
export function ensureComposeConfig(): string {
  if (!existsSync(COMPOSE_CONFIG_BIN)) {
    execFileSync('go', ['build', '-o', COMPOSE_CONFIG_BIN, '.'], {
      cwd: path.join(ROOT, 'tools/deploy/compose-config'),
      stdio: ['ignore', 'inherit', 'inherit'],
      env: { ...process.env, GOFLAGS: '-buildvcs=false' },
    });
  }
  return COMPOSE_CONFIG_BIN;
}

/** The outcome of loading compose files as Docker Compose would. */
export interface ComposeLoad {
  ok: boolean;
  /** The normalized project (`docker compose config --format json`) when ok. */
  project?: Record<string, any>;
  /** The loader's message when not. */
  error?: string;
}

/** Loads compose files through compose-go (schema, interpolation, semantics) with this environment. */
export function loadCompose(files: readonly string[], env: Record<string, string> = {}): ComposeLoad {
  const bin = ensureComposeConfig();
  try {
    const out = execFileSync(bin, [...files], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '', ...env },
    });
    return { ok: true, project: JSON.parse(out) };
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    return { ok: false, error: (e.stderr || e.message).trim() };
  }
}

/** Each compose service as a one-container workload (compose services share no localhost). */
export function composeWorkloads(project: Record<string, any>): Workload[] {
  const named = Object.keys(project['volumes'] ?? {});
  return Object.entries(project['services'] as Record<string, Record<string, any>>).map(([name, svc]) => {
    const env: Record<string, string> = { ...(svc['environment'] ?? {}) };
    // The image sets DOPS_SERVICE from its build argument (node.Dockerfile).
    const buildService = svc['build']?.args?.SERVICE as string | undefined;
    if (buildService) env['DOPS_SERVICE'] = buildService;
    const mounts: Container['mounts'] = (svc['volumes'] ?? []).map((v: Record<string, any>) => ({
      path: v['target'],
      readOnly: v['read_only'] === true,
      volume: v['source'],
      source:
        v['type'] === 'volume'
          ? { kind: 'claim', name: v['source'] }
          : { kind: 'hostPath', name: v['source'] },
    }));
    for (const s of svc['secrets'] ?? []) {
      mounts.push({
        path: s['target'] ?? `/run/secrets/${s['source']}`,
        readOnly: true,
        volume: s['source'],
        source: { kind: 'secret', name: s['source'] },
      });
    }
    const health = svc['healthcheck'] as { test?: string[] } | undefined;
    const probePort = health?.test?.join(' ').match(/-addr=[^:\s]+:(\d+)/)?.[1];
    const probe = health?.test
      ? { present: true as const, grpcPort: probePort ? Number(probePort) : undefined }
      : undefined;
    const container: Container = {
      name,
      image: svc['image'],
      env,
      literalEnvNames: Object.keys(svc['environment'] ?? {}),
      mounts,
      ports: [
        ...(svc['ports'] ?? []).map((p: Record<string, any>) => ({ port: Number(p['target']) })),
        ...(svc['expose'] ?? []).map((p: string) => ({ port: Number(p) })),
      ],
      requests: {},
      limits: {},
      startupProbe: probe,
      readinessProbe: probe,
      livenessProbe: probe,
    };
    return {
      source: 'compose',
      name: `compose/${name}`,
      os: 'linux',
      labels: { service: name },
      containers: [container],
      volumeNames: named,
      object: svc,
    } satisfies Workload;
  });
}

/** Resolves a compose address: a service name whose gRPC port (or exposed port, for Redis) that is. */
export function composeResolver(
  workloads: readonly Workload[],
  loaded: readonly { workload: Workload; config: Record<string, any> }[],
) {
  return (_from: unknown, host: string, port: number): boolean => {
    const target = workloads.find((w) => w.labels['service'] === host);
    if (!target) return false;
    const dops = loaded.find((l) => l.workload === target);
    return dops
      ? dops.config['grpc'].port === port
      : target.containers[0]!.ports.some((p) => p.port === port);
  };
}
