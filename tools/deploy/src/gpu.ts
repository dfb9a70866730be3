import * as path from 'node:path';
import { parse } from 'yaml';
import { GPU_SHARING_DIR, readObjects } from './kubernetes';
import type { LoadedContainer } from './service-env';
import type { Workload } from './workload';

/** Extended resources that are GPUs (or a share of one). */
export const GPU_RESOURCE = /^(nvidia\.com\/gpu|directx\.microsoft\.com\/|amd\.com\/gpu|gpu\.intel\.com\/)/;

/**
 * How many containers may hold one physical GPU through each shared resource, read from the
 * device plugins' configuration in gpu-sharing/: NVIDIA time-slicing (`<name>.shared` replicas
 * when renamed) and the DirectX plugins' multitenancy. A GPU resource not listed is one GPU.
 */
export function gpuSharing(dir = GPU_SHARING_DIR): Map<string, number> {
  const sharing = new Map<string, number>();
  const objects = readObjects([
    path.join(dir, 'nvidia-time-slicing.yaml'),
    path.join(dir, 'directx-multitenancy.yaml'),
  ]);
  for (const o of objects) {
    for (const [key, text] of Object.entries((o['data'] ?? {}) as Record<string, string>)) {
      if (key === 'multitenancy') {
        for (const r of ['directx.microsoft.com/display', 'directx.microsoft.com/compute'])
          sharing.set(r, Number(text));
        continue;
      }
      const slicing = (parse(text) as any)?.sharing?.timeSlicing;
      for (const r of slicing?.resources ?? []) {
        const name = slicing.renameByDefault ? `${r.name}.shared` : r.name;
        sharing.set(name, Number(r.replicas));
      }
    }
  }
  return sharing;
}

function count(value: string | number | undefined): number {
  return value === undefined ? 0 : Number(value);
}

/**
 * One GPU per pod on a one-GPU node: each container asks for at most one unit of a GPU resource
 * (limits, which is what the scheduler counts for extended resources; requests equal to them),
 * and a pod's units of a resource never exceed what one physical GPU provides (1, or the sharing
 * replicas). Each worker owner on a GPU backend asks for one, or it would see no GPU; those of
 * one pod ask for the same resource, so they share the node's one card.
 */
export function checkGpu(
  workloads: readonly Workload[],
  loaded: readonly LoadedContainer[],
  sharing: ReadonlyMap<string, number>,
): string[] {
  const violations: string[] = [];
  for (const w of workloads) {
    const perResource = new Map<string, number>();
    for (const c of w.containers) {
      for (const [resource, value] of Object.entries(c.limits)) {
        if (!GPU_RESOURCE.test(resource)) continue;
        const n = count(value);
        if (n > 1) violations.push(`${w.name}/${c.name}: ${n} × ${resource} (at most one GPU per container)`);
        if (c.requests[resource] !== undefined && count(c.requests[resource]) !== n) {
          violations.push(`${w.name}/${c.name}: ${resource} requests differ from limits`);
        }
        perResource.set(resource, (perResource.get(resource) ?? 0) + n);
      }
      for (const resource of Object.keys(c.requests)) {
        if (GPU_RESOURCE.test(resource) && c.limits[resource] === undefined) {
          violations.push(`${w.name}/${c.name}: ${resource} requested without a limit`);
        }
      }
    }
    for (const [resource, n] of perResource) {
      const perGpu = sharing.get(resource) ?? 1;
      if (n > perGpu)
        violations.push(`${w.name}: ${n} × ${resource} in one pod, more than one GPU (${perGpu} per GPU)`);
    }
    if (perResource.size > 1)
      violations.push(`${w.name}: GPUs of ${[...perResource.keys()].join(' and ')} in one pod`);
  }
  for (const l of loaded) {
    const backend = l.config['worker']?.backend as string;
    if (
      !['inference', 'postprocessing'].includes(l.service) ||
      !['cuda', 'rocm', 'directml'].includes(backend)
    )
      continue;
    const gpus = Object.keys(l.container.limits).filter((r) => GPU_RESOURCE.test(r));
    if (gpus.length !== 1)
      violations.push(
        `${l.workload.name}/${l.container.name}: backend ${backend} but ${gpus.length} GPU resources`,
      );
  }
  return violations;
}
