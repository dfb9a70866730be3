import { type K8sObject, k8sServices, matchesSelector, selects } from './kubernetes';
import type { LoadedContainer } from './service-env';
import type { Workload } from './workload';

/** Who may open a connection: anyone, the operators' namespaces, or pods of the namespace with these labels. */
export type Source =
  | { kind: 'world' }
  | { kind: 'operators' }
  | { kind: 'pods'; selector: Record<string, any> };

const OPERATORS_LABEL = 'dops.dev/operators';

/** The sources the namespace's NetworkPolicies admit to a pod's port; `world` when no policy selects the pod. */
export function admittedSources(
  policies: readonly K8sObject[],
  labels: Record<string, string>,
  port: number,
): Source[] {
  const selecting = policies.filter(
    (p) =>
      matchesSelector(p['spec'].podSelector ?? {}, labels) &&
      (p['spec'].policyTypes ?? ['Ingress']).includes('Ingress'),
  );
  if (selecting.length === 0) return [{ kind: 'world' }];
  const sources: Source[] = [];
  for (const policy of selecting) {
    for (const rule of policy['spec'].ingress ?? []) {
      const ports = rule.ports as { port: number }[] | undefined;
      if (ports && !ports.some((p) => p.port === port)) continue;
      if (!rule.from) {
        sources.push({ kind: 'world' });
        continue;
      }
      for (const peer of rule.from) {
        if (peer.ipBlock) sources.push({ kind: 'world' });
        else if (peer.namespaceSelector) {
          const operatorsOnly = peer.namespaceSelector.matchLabels?.[OPERATORS_LABEL] === 'true';
          sources.push(operatorsOnly ? { kind: 'operators' } : { kind: 'world' });
        } else if (peer.podSelector) sources.push({ kind: 'pods', selector: peer.podSelector });
      }
    }
  }
  return sources;
}

/** True when a pod with `fromLabels` of the namespace may connect to `port` of the pod with `toLabels`. */
export function admits(
  policies: readonly K8sObject[],
  toLabels: Record<string, string>,
  port: number,
  fromLabels: Record<string, string>,
): boolean {
  return admittedSources(policies, toLabels, port).some(
    (s) => s.kind === 'world' || (s.kind === 'pods' && matchesSelector(s.selector, fromLabels)),
  );
}

/**
 * Only processing's gRPC port is open to everyone; operators (namespaces labelled
 * dops.dev/operators=true) reach the metrics and admin ports and nothing else; every other port
 * only from pods of the namespace. Every metrics port is reachable by operators (Prometheus).
 */
export function checkNetworkPolicies(
  objects: readonly K8sObject[],
  workloads: readonly Workload[],
  loaded: readonly LoadedContainer[],
): string[] {
  const policies = objects.filter((o) => o.kind === 'NetworkPolicy');
  const violations: string[] = [];
  for (const w of workloads) {
    for (const c of w.containers) {
      const l = loaded.find((x) => x.workload === w && x.container === c);
      const metrics = l?.config['metrics']?.enabled ? [l.config['metrics'].port as number] : [];
      const admin = l?.config['admin']?.enabled ? [l.config['admin'].port as number] : [];
      const publicPorts = l?.service === 'processing' ? [l.config['grpc'].port as number] : [];
      for (const { port } of c.ports) {
        const sources = admittedSources(policies, w.labels, port);
        const where = `${w.name}/${c.name}:${port}`;
        if (sources.some((s) => s.kind === 'world') && !publicPorts.includes(port))
          violations.push(`${where} is open to everyone`);
        if (sources.some((s) => s.kind === 'operators') && ![...metrics, ...admin].includes(port)) {
          violations.push(`${where} is open to operators but is no metrics or admin port`);
        }
      }
      for (const port of metrics) {
        if (
          !admittedSources(policies, w.labels, port).some((s) => s.kind === 'operators' || s.kind === 'world')
        ) {
          violations.push(`${w.name}/${c.name}: metrics port ${port} unreachable for operators`);
        }
      }
    }
  }
  return violations;
}

/**
 * Resolves an address a Kubernetes container's setting names: localhost → a container of its own
 * pod whose port that is; a Service name (`svc`, `svc.<ns>.svc[.cluster.local]`) → the Service's
 * port, whose target is a declared port of a pod it selects (and, for a dops container, its gRPC
 * port), admitted by the NetworkPolicies from the calling pod.
 */
export function k8sResolver(
  objects: readonly K8sObject[],
  workloads: readonly Workload[],
  loaded: readonly LoadedContainer[],
) {
  const services = k8sServices(objects);
  const policies = objects.filter((o) => o.kind === 'NetworkPolicy');
  const serves = (w: Workload, target: number | string): number | undefined => {
    for (const c of w.containers) {
      const p = c.ports.find((x) => x.port === target || x.name === target);
      if (!p) continue;
      const l = loaded.find((x) => x.workload === w && x.container === c);
      // A dops container listens where its config says, whatever port it declares.
      if (
        l &&
        ![
          l.config['grpc'].port,
          l.config['grpc'].healthPort,
          l.config['metrics']?.port,
          l.config['admin']?.port,
        ].includes(p.port)
      )
        continue;
      return p.port;
    }
    return undefined;
  };
  return (from: LoadedContainer, host: string, port: number): boolean => {
    if (['127.0.0.1', 'localhost', '::1'].includes(host)) {
      return loaded.some((x) => x.workload === from.workload && x.config['grpc'].port === port);
    }
    const service = services.get(host.split('.')[0]!);
    const target = service?.ports.get(port);
    if (!service || target === undefined) return false;
    return workloads.some((w) => {
      if (!selects(service.selector, w.labels) || Object.keys(service.selector).length === 0) return false;
      const p = serves(w, target);
      return p !== undefined && admits(policies, w.labels, p, from.workload.labels);
    });
  };
}
