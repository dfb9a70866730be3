import type { VolumeSource } from './kubernetes';

/** A container of a deployment as the invariants see it, from a Kubernetes pod or a compose service. */
export interface Container {
  name: string;
  image: string | undefined;
  /** Its environment; a value filled in at start (fieldRef, secretKeyRef) reads `set-at-runtime`. */
  env: Record<string, string>;
  /** Variables given as literal values in the manifest (not from a secret or field). */
  literalEnvNames: string[];
  mounts: { path: string; readOnly: boolean; volume: string; source: VolumeSource | undefined }[];
  ports: { port: number; name?: string }[];
  requests: Record<string, string | number>;
  limits: Record<string, string | number>;
  startupProbe?: { grpcPort?: number; present: true };
  readinessProbe?: { grpcPort?: number; present: true };
  livenessProbe?: { grpcPort?: number; present: true };
}

/** A pod (Kubernetes workload) or a compose service: containers that share localhost. */
export interface Workload {
  source: 'kubernetes' | 'compose';
  /** `DaemonSet/dops-node-linux`, `compose/inference`. */
  name: string;
  os: 'linux' | 'windows';
  labels: Record<string, string>;
  containers: Container[];
  /** The pod's volumes (Kubernetes) or the compose file's named volumes. */
  volumeNames: string[];
  /** The object it came from. */
  object: Record<string, unknown>;
}

/** The dops service a container runs (DOPS_SERVICE), or undefined for another image (Redis). */
export function serviceOf(container: Container): string | undefined {
  return container.env['DOPS_SERVICE'];
}
