import { ConfigError } from '@dops/config';
import {
  type ServiceConfig,
  addressLeaves,
  addressesOf,
  pathLeaves,
  pathsOf,
  valueAt,
} from './service-configs';
import { type Container, type Workload, serviceOf } from './workload';

/** A dops container with the configuration its service loads from the manifest's environment. */
export interface LoadedContainer {
  workload: Workload;
  container: Container;
  service: string;
  definition: ServiceConfig;
  config: Record<string, any>;
}

// Read by the image, not by a service's config: which app the container runs.
const IMAGE_VARIABLES = new Set(['DOPS_SERVICE']);

/**
 * Loads each dops container's config from its environment exactly as the service does at start
 * (defaults < environment, validated by the service's own schema). Violations: a service no app
 * declares, a config that does not load (a required setting unset, a bad value), a DOPS_ variable
 * no setting of that service reads (a typo, or one meant for another service).
 */
export function loadContainers(
  workloads: readonly Workload[],
  configs: ReadonlyMap<string, ServiceConfig>,
): { loaded: LoadedContainer[]; violations: string[] } {
  const loaded: LoadedContainer[] = [];
  const violations: string[] = [];
  for (const workload of workloads) {
    for (const container of workload.containers) {
      const service = serviceOf(container);
      if (service === undefined) continue;
      const where = `${workload.name}/${container.name}`;
      const definition = configs.get(service);
      if (!definition) {
        violations.push(`${where}: DOPS_SERVICE=${service} is no app with a config`);
        continue;
      }
      const known = new Set(definition.leaves.map((l) => l.envVar));
      for (const name of Object.keys(container.env)) {
        if (name.startsWith('DOPS_') && !known.has(name) && !IMAGE_VARIABLES.has(name)) {
          violations.push(`${where}: ${name} is read by no setting of ${service}`);
        }
      }
      try {
        const config = definition.load({ env: container.env }) as Record<string, any>;
        loaded.push({ workload, container, service, definition, config });
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        violations.push(`${where}: ${service}'s config does not load: ${err.message}`);
      }
    }
  }
  return { loaded, violations };
}

function normalize(p: string): string {
  return p.replace(/\\/g, '/').replace(/\/+$/, '').toLowerCase();
}

/** The mount a path lies under (the longest mount path that contains it). */
export function mountOf(container: Container, target: string): Container['mounts'][number] | undefined {
  const t = normalize(target);
  return container.mounts
    .filter((m) => t === normalize(m.path) || t.startsWith(`${normalize(m.path)}/`))
    .sort((a, b) => b.path.length - a.path.length)[0];
}

// Settings the service (or its worker) writes to; the others it only reads.
const WRITTEN = /^(statePath)$/;

/**
 * Every file or folder a setting names lies on a mounted volume of that container (a default
 * under /tmp or a relative path is a violation: it would live in the container's own layer);
 * the ones the service writes on a writable mount; secrets (TLS keys, token file, Redis password)
 * on secret volumes.
 */
export function checkMounts(loaded: readonly LoadedContainer[]): string[] {
  const violations: string[] = [];
  for (const { workload, container, definition, config, service } of loaded) {
    for (const leaf of pathLeaves(definition)) {
      const key = leaf.path[leaf.path.length - 1]!;
      for (const p of pathsOf(leaf, valueAt(config, leaf), workload.os)) {
        const where = `${workload.name}/${container.name}: ${leaf.envVar}=${p}`;
        const mount = mountOf(container, p);
        if (!mount) {
          violations.push(`${where} is on no mounted volume`);
          continue;
        }
        if (!mount.source) violations.push(`${where}: its mount names no volume of the pod`);
        // Artifacts: the workers write them, processing's retention deletes them.
        const written =
          WRITTEN.test(key) ||
          leaf.envVar === 'DOPS_ARTIFACT_ROOT' ||
          (service === 'processing' && leaf.envVar === 'DOPS_INPUT_ROOT');
        if (written && mount.readOnly) violations.push(`${where} is written but mounted read-only`);
        // Compose mounts the development credentials read-only (tools/dev-credentials.sh).
        const fromSecret =
          mount.source?.kind === 'secret' || (workload.source === 'compose' && mount.readOnly);
        if (/file$/i.test(key) && !fromSecret)
          violations.push(`${where} (a credential) is not from a secret`);
      }
    }
    for (const m of container.mounts) {
      if (!m.source) violations.push(`${workload.name}/${container.name}: mount ${m.path} names no volume`);
    }
  }
  return violations;
}

/**
 * Credentials never travel as literal values: no password in the Redis URL, and no literal
 * variable whose name says password, token or key (those are files from secrets).
 */
export function checkSecrets(loaded: readonly LoadedContainer[]): string[] {
  const violations: string[] = [];
  for (const { workload, container, config } of loaded) {
    const where = `${workload.name}/${container.name}`;
    const url = config['queue']?.redisUrl as string | undefined;
    if (url && new URL(url).password !== '') violations.push(`${where}: the Redis URL carries a password`);
    if (url && !config['queue']?.redisPasswordFile)
      violations.push(`${where}: Redis without a password file`);
    for (const name of container.literalEnvNames) {
      if (/(PASSWORD|TOKEN|SECRET|_KEY)$/.test(name))
        violations.push(`${where}: ${name} is a literal credential`);
    }
  }
  return violations;
}

/** The container of the same workload serving gRPC on this port. */
function localServer(
  workload: Workload,
  loaded: readonly LoadedContainer[],
  port: number,
): LoadedContainer | undefined {
  return loaded.find((l) => l.workload === workload && l.config['grpc']?.port === port);
}

/**
 * Device and memory see what they report: every host they ask is a worker owner (inference,
 * postprocessing) of their own pod on localhost (Kubernetes) — never a cluster-wide Service,
 * which would answer for another node's GPU — and together they ask every worker owner there.
 */
export function checkNodeViews(loaded: readonly LoadedContainer[]): string[] {
  const violations: string[] = [];
  const OWNERS = ['inference', 'postprocessing'];
  for (const l of loaded.filter((x) => x.service === 'device' || x.service === 'memory')) {
    const where = `${l.workload.name}/${l.container.name}`;
    const hosts = addressesOf(l.config[l.service]?.hosts);
    const reached = new Set<string>();
    for (const { host, port } of hosts) {
      const target =
        l.workload.source === 'kubernetes'
          ? ['127.0.0.1', 'localhost', '::1'].includes(host)
            ? localServer(l.workload, loaded, port)
            : undefined
          : loaded.find((x) => x.workload.labels['service'] === host && x.config['grpc']?.port === port);
      if (!target || !OWNERS.includes(target.service)) {
        violations.push(`${where}: ${host}:${port} is no worker owner of this node`);
      } else reached.add(target.service);
    }
    const present = loaded
      .filter((x) => (l.workload.source === 'kubernetes' ? x.workload === l.workload : true))
      .map((x) => x.service)
      .filter((s) => OWNERS.includes(s));
    for (const owner of present) if (!reached.has(owner)) violations.push(`${where}: does not ask ${owner}`);
  }
  return violations;
}

/** Every address a setting names is served: the port of a service that listens there. */
export function checkAddresses(
  loaded: readonly LoadedContainer[],
  resolve: (from: LoadedContainer, host: string, port: number) => boolean,
): string[] {
  const violations: string[] = [];
  for (const l of loaded) {
    for (const leaf of addressLeaves(l.definition)) {
      for (const { host, port } of addressesOf(valueAt(l.config, leaf))) {
        if (!resolve(l, host, port)) {
          violations.push(
            `${l.workload.name}/${l.container.name}: ${leaf.envVar} names ${host}:${port}, which nothing serves`,
          );
        }
      }
    }
    const url = l.config['queue']?.redisUrl as string | undefined;
    if (url) {
      const u = new URL(url);
      if (!resolve(l, u.hostname, Number(u.port || 6379))) {
        violations.push(
          `${l.workload.name}/${l.container.name}: DOPS_REDIS_URL names ${u.host}, which nothing serves`,
        );
      }
    }
  }
  return violations;
}
