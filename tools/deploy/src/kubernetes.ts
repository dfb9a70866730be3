import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { parseAllDocuments } from 'yaml';
import type { Container, Workload } from './workload';

/** The repository root. */
export const ROOT = path.resolve(__dirname, '../../..');
/** The Kubernetes manifests. */
export const K8S_DIR = path.join(ROOT, 'deploy/k8s');
/** The device plugins' sharing configuration the node pools rely on. */
export const GPU_SHARING_DIR = path.join(K8S_DIR, 'gpu-sharing');

/** One Kubernetes object as parsed (apiVersion, kind, metadata, spec, ...), with the file it came from. */
export type K8sObject = Record<string, any> & { kind: string; metadata: { name: string }; file: string };

/** Every object of the files, in order. Throws on a YAML error. */
export function readObjects(files: readonly string[]): K8sObject[] {
  const objects: K8sObject[] = [];
  for (const file of files) {
    for (const doc of parseAllDocuments(readFileSync(file, 'utf8'))) {
      if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0]!.message}`);
      const value = doc.toJS() as Record<string, any> | null;
      if (value) objects.push({ ...value, file: path.relative(ROOT, file) } as K8sObject);
    }
  }
  return objects;
}

/** The files kustomization.yaml lists (the namespace's objects), absolute. */
export function kustomizationFiles(): string[] {
  const [kustomization] = readObjects([path.join(K8S_DIR, 'kustomization.yaml')]);
  return (kustomization!['resources'] as string[]).map((file) => path.join(K8S_DIR, file));
}

const WORKLOAD_KINDS = new Set(['Deployment', 'DaemonSet', 'StatefulSet']);

/** The workloads (Deployment, DaemonSet, StatefulSet) of the objects as pods of containers. */
export function k8sWorkloads(objects: readonly K8sObject[]): Workload[] {
  return objects
    .filter((o) => WORKLOAD_KINDS.has(o.kind))
    .map((o) => {
      const template = o['spec'].template;
      const pod = template.spec;
      const volumes = new Map<string, VolumeSource>(
        (pod.volumes ?? []).map((v: Record<string, any>) => [v['name'], volumeSource(v)]),
      );
      for (const claim of o['spec'].volumeClaimTemplates ?? []) {
        volumes.set(claim.metadata.name, { kind: 'claimTemplate', name: claim.metadata.name });
      }
      const os = pod.nodeSelector?.['kubernetes.io/os'] === 'windows' ? 'windows' : 'linux';
      return {
        source: 'kubernetes',
        name: `${o.kind}/${o.metadata.name}`,
        os,
        labels: template.metadata?.labels ?? {},
        containers: (pod.containers as Record<string, any>[]).map((c) => k8sContainer(c, volumes)),
        volumeNames: [...volumes.keys()],
        object: o,
      } satisfies Workload;
    });
}

/** Where a pod volume's bytes live. */
export type VolumeSource =
  | { kind: 'claim'; name: string }
  | { kind: 'claimTemplate'; name: string }
  | { kind: 'secret'; name: string }
  | { kind: 'hostPath'; name: string }
  | { kind: 'other'; name: string };

function volumeSource(v: Record<string, any>): VolumeSource {
  if (v['persistentVolumeClaim']) return { kind: 'claim', name: v['persistentVolumeClaim'].claimName };
  if (v['secret']) return { kind: 'secret', name: v['secret'].secretName };
  if (v['hostPath']) return { kind: 'hostPath', name: v['hostPath'].path };
  return { kind: 'other', name: v['name'] };
}

// A value the kubelet fills in at start (spec.nodeName, a secret's key): any non-empty string.
const RUNTIME_VALUE = 'set-at-runtime';

function k8sContainer(c: Record<string, any>, volumes: Map<string, VolumeSource>): Container {
  const env: Record<string, string> = {};
  for (const e of c['env'] ?? []) env[e.name] = e.value ?? (e.valueFrom ? RUNTIME_VALUE : '');
  const probe = (p: Record<string, any> | undefined) =>
    p ? { grpcPort: p['grpc']?.port as number | undefined, present: true as const } : undefined;
  return {
    name: c['name'],
    image: c['image'],
    env,
    literalEnvNames: (c['env'] ?? []).filter((e: any) => e.value !== undefined).map((e: any) => e.name),
    mounts: (c['volumeMounts'] ?? []).map((m: Record<string, any>) => ({
      path: m['mountPath'],
      readOnly: m['readOnly'] === true,
      volume: m['name'],
      source: volumes.get(m['name']),
    })),
    ports: (c['ports'] ?? []).map((p: Record<string, any>) => ({
      port: p['containerPort'],
      name: p['name'],
    })),
    requests: c['resources']?.requests ?? {},
    limits: c['resources']?.limits ?? {},
    startupProbe: probe(c['startupProbe']),
    readinessProbe: probe(c['readinessProbe']),
    livenessProbe: probe(c['livenessProbe']),
  };
}

/** Services of the objects: name → ports (port → targetPort) and pod selector. */
export function k8sServices(
  objects: readonly K8sObject[],
): Map<string, { selector: Record<string, string>; ports: Map<number, number | string> }> {
  const services = new Map<
    string,
    { selector: Record<string, string>; ports: Map<number, number | string> }
  >();
  for (const o of objects.filter((x) => x.kind === 'Service')) {
    const ports = new Map<number, number | string>(
      (o['spec'].ports as Record<string, any>[]).map((p) => [p['port'], p['targetPort'] ?? p['port']]),
    );
    services.set(o.metadata.name, { selector: o['spec'].selector ?? {}, ports });
  }
  return services;
}

/** A label selector (matchLabels and matchExpressions) matches the labels. */
export function matchesSelector(selector: Record<string, any>, labels: Record<string, string>): boolean {
  if (!selects(selector['matchLabels'] ?? {}, labels)) return false;
  return (
    (selector['matchExpressions'] ?? []) as { key: string; operator: string; values?: string[] }[]
  ).every((e) => {
    const value = labels[e.key];
    switch (e.operator) {
      case 'In':
        return value !== undefined && (e.values ?? []).includes(value);
      case 'NotIn':
        return value === undefined || !(e.values ?? []).includes(value);
      case 'Exists':
        return value !== undefined;
      default:
        return value === undefined;
    }
  });
}

/** True when every label of the selector is on the pod. */
export function selects(selector: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}
