import { mountOf, type LoadedContainer } from './service-env';
import type { Workload } from './workload';

/** `name:tag` with a tag that names a version: not `latest`, not absent (a digest also pins). */
export function checkImages(workloads: readonly Workload[]): string[] {
  const violations: string[] = [];
  for (const w of workloads) {
    for (const c of w.containers) {
      const image = c.image ?? '';
      const tag = image.includes('@sha256:')
        ? 'digest'
        : image.slice(image.lastIndexOf('/') + 1).split(':')[1];
      if (!tag || tag === 'latest') violations.push(`${w.name}/${c.name}: image '${image}' is not pinned`);
    }
  }
  return violations;
}

/**
 * Startup, readiness and liveness probes on every container; a dops container's are gRPC
 * health probes on its plaintext health port (DOPS_GRPC_HEALTH_PORT), which is not its TLS port,
 * and it declares its gRPC and metrics ports.
 */
export function checkProbes(workloads: readonly Workload[], loaded: readonly LoadedContainer[]): string[] {
  const violations: string[] = [];
  for (const w of workloads) {
    for (const c of w.containers) {
      const where = `${w.name}/${c.name}`;
      const l = loaded.find((x) => x.workload === w && x.container === c);
      const kinds =
        w.source === 'compose'
          ? (['livenessProbe'] as const)
          : (['startupProbe', 'readinessProbe', 'livenessProbe'] as const);
      for (const kind of kinds) {
        const probe = c[kind];
        const name = w.source === 'compose' ? 'healthcheck' : kind;
        if (!probe) violations.push(`${where}: no ${name}`);
        else if (l) {
          const health = l.config['grpc'].healthPort as number | undefined;
          if (health === undefined) violations.push(`${where}: no DOPS_GRPC_HEALTH_PORT for its ${name}`);
          else if (probe.grpcPort !== health)
            violations.push(`${where}: ${name} asks port ${probe.grpcPort}, health is on ${health}`);
        }
      }
      if (l && w.source === 'kubernetes') {
        const declared = c.ports.map((p) => p.port);
        for (const port of [
          l.config['grpc'].port,
          l.config['metrics']?.enabled ? l.config['metrics'].port : undefined,
        ]) {
          if (port !== undefined && !declared.includes(port))
            violations.push(`${where}: port ${port} not declared`);
        }
      }
    }
  }
  return violations;
}

/** Every container requests CPU and memory and has a memory limit. */
export function checkResources(workloads: readonly Workload[]): string[] {
  const violations: string[] = [];
  for (const w of workloads) {
    for (const c of w.containers) {
      for (const [what, value] of [
        ['requests.cpu', c.requests['cpu']],
        ['requests.memory', c.requests['memory']],
        ['limits.memory', c.limits['memory']],
      ] as const) {
        if (value === undefined) violations.push(`${w.name}/${c.name}: no ${what}`);
      }
    }
  }
  return violations;
}

/**
 * Where processing writes client input images is where every worker owner reads them (the same
 * shared volume: a ReadWriteMany claim in Kubernetes, one named volume in compose), and the
 * artifact roots of the worker owners are one shared volume too.
 */
export function checkSharedStorage(
  loaded: readonly LoadedContainer[],
  accessModes: ReadonlyMap<string, string[]>,
): string[] {
  const violations: string[] = [];
  // The two roots keep these names in every service and in the workers (DESIGN §2).
  for (const envVar of ['DOPS_INPUT_ROOT', 'DOPS_ARTIFACT_ROOT']) {
    const volumes = new Set<string>();
    for (const l of loaded) {
      const leaf = l.definition.leaves.find((x) => x.envVar === envVar);
      if (!leaf) continue;
      const value = leaf.path.reduce<any>((n, k) => n?.[k], l.config) as string;
      const mount = mountOf(l.container, value);
      const where = `${l.workload.name}/${l.container.name}: ${envVar}`;
      if (mount?.source?.kind !== 'claim') {
        violations.push(`${where} is on no shared volume`);
        continue;
      }
      volumes.add(mount.source.name);
      const modes = accessModes.get(mount.source.name);
      if (modes && !modes.includes('ReadWriteMany'))
        violations.push(`${where}: claim ${mount.source.name} is not ReadWriteMany`);
    }
    if (volumes.size > 1) violations.push(`${envVar}: on different volumes (${[...volumes].join(', ')})`);
  }
  return violations;
}

/**
 * A safety stage runs unless processing's default is `off`: then every postprocessing has a
 * safety checker configured (else every job that leaves safety unset fails its safety stage).
 */
export function checkSafety(loaded: readonly LoadedContainer[]): string[] {
  const processing = loaded.filter((l) => l.service === 'processing');
  if (processing.every((l) => l.config['processing'].defaultSafety === 'off')) return [];
  return loaded
    .filter((l) => l.service === 'postprocessing' && !l.config['postprocessing'].safetyCheckerPath)
    .map(
      (l) =>
        `${l.workload.name}/${l.container.name}: no safety checker (DOPS_POSTPROCESSING_SAFETY_CHECKER_PATH) while the default policy is ${processing[0]!.config['processing'].defaultSafety}`,
    );
}

/** Compose: a dops service waits for the services it needs to be healthy, not merely started. */
export function checkComposeDependencies(workloads: readonly Workload[]): string[] {
  const violations: string[] = [];
  for (const w of workloads) {
    for (const [dep, spec] of Object.entries(
      (w.object['depends_on'] ?? {}) as Record<string, { condition?: string }>,
    )) {
      if (spec.condition !== 'service_healthy')
        violations.push(`${w.name}: depends on ${dep} with ${spec.condition}`);
    }
  }
  return violations;
}
