// The Kubernetes manifests (deploy/k8s) against what a one-GPU node needs: every invariant is
// computed from the manifests and the services' own config schemas (apps/*/src/config.ts), and
// each is shown to catch the mistake it exists for on a mutated copy.
import {
  type K8sObject,
  checkAddresses,
  checkGpu,
  checkImages,
  checkMounts,
  checkNetworkPolicies,
  checkNodeViews,
  checkProbes,
  checkResources,
  checkSafety,
  checkSecrets,
  checkSharedStorage,
  gpuSharing,
  k8sResolver,
  k8sWorkloads,
  kustomizationFiles,
  loadContainers,
  readObjects,
  serviceConfigs,
} from '../src';

const configs = serviceConfigs();
const sharing = gpuSharing();
const OBJECTS = readObjects(kustomizationFiles());

function violations(objects: readonly K8sObject[]): string[] {
  const workloads = k8sWorkloads(objects);
  const { loaded, violations: env } = loadContainers(workloads, configs);
  const accessModes = new Map<string, string[]>(
    objects
      .filter((o) => o.kind === 'PersistentVolumeClaim')
      .map((o) => [o.metadata.name, o['spec'].accessModes]),
  );
  return [
    ...env,
    ...checkMounts(loaded),
    ...checkSecrets(loaded),
    ...checkNodeViews(loaded),
    ...checkAddresses(loaded, k8sResolver(objects, workloads, loaded)),
    ...checkGpu(workloads, loaded, sharing),
    ...checkImages(workloads),
    ...checkProbes(workloads, loaded),
    ...checkResources(workloads),
    ...checkSharedStorage(loaded, accessModes),
    ...checkSafety(loaded),
    ...checkNetworkPolicies(objects, workloads, loaded),
  ];
}

/** A copy of the manifests with one change made to the named workload's pod spec. */
function mutated(workload: string, change: (pod: Record<string, any>) => void): K8sObject[] {
  const copy = structuredClone(OBJECTS);
  const target = copy.find((o) => `${o.kind}/${o.metadata.name}` === workload);
  if (!target) throw new Error(`no ${workload}`);
  change(target['spec'].template.spec);
  return copy;
}

const container = (pod: Record<string, any>, name: string) =>
  pod['containers'].find((c: any) => c.name === name);
const setEnv = (c: Record<string, any>, name: string, value: string | undefined) => {
  c['env'] = c['env'].filter((e: any) => e.name !== name);
  if (value !== undefined) c['env'].push({ name, value });
};

describe('Kubernetes manifests', () => {
  it('reads every app config and both node pools', () => {
    expect([...configs.keys()].sort()).toEqual([
      'device',
      'inference',
      'memory',
      'model',
      'postprocessing',
      'processing',
    ]);
    const workloads = k8sWorkloads(OBJECTS).map((w) => w.name);
    expect(workloads).toEqual(
      expect.arrayContaining([
        'DaemonSet/dops-node-linux',
        'DaemonSet/dops-node-windows',
        'Deployment/processing',
        'StatefulSet/redis',
      ]),
    );
    // Each node pod runs every node service once.
    for (const pool of ['DaemonSet/dops-node-linux', 'DaemonSet/dops-node-windows']) {
      const pod = k8sWorkloads(OBJECTS).find((w) => w.name === pool)!;
      expect(pod.containers.map((c) => c.env['DOPS_SERVICE']).sort()).toEqual([
        'device',
        'inference',
        'memory',
        'model',
        'postprocessing',
      ]);
    }
  });

  it('hold every invariant', () => {
    expect(violations(OBJECTS)).toEqual([]);
  });

  it('share one GPU per node through the device plugins (2 shares per GPU, one per worker owner)', () => {
    expect(sharing.get('nvidia.com/gpu.shared')).toBe(2);
    expect(sharing.get('directx.microsoft.com/display')).toBe(2);
    // Two whole GPUs in one pod (each worker owner its own) do not fit a one-GPU node.
    const twoGpus = mutated('DaemonSet/dops-node-linux', (pod) => {
      for (const name of ['inference', 'postprocessing'])
        container(pod, name).resources = {
          requests: { cpu: '1', memory: '1Gi' },
          limits: { memory: '2Gi', 'nvidia.com/gpu': 1 },
        };
    });
    expect(violations(twoGpus)).toContain(
      'DaemonSet/dops-node-linux: 2 × nvidia.com/gpu in one pod, more than one GPU (1 per GPU)',
    );
    // A worker owner without a GPU resource sees no GPU.
    const noGpu = mutated('DaemonSet/dops-node-windows', (pod) => {
      container(pod, 'postprocessing').resources = {
        requests: { cpu: '1', memory: '1Gi' },
        limits: { memory: '2Gi' },
      };
    });
    expect(violations(noGpu)).toContain(
      'DaemonSet/dops-node-windows/postprocessing: backend directml but 0 GPU resources',
    );
    // Three shares of a GPU shared two ways.
    const third = mutated('DaemonSet/dops-node-linux', (pod) => {
      container(pod, 'model').resources.limits['nvidia.com/gpu.shared'] = 1;
    });
    expect(violations(third)).toContain(
      'DaemonSet/dops-node-linux: 3 × nvidia.com/gpu.shared in one pod, more than one GPU (2 per GPU)',
    );
  });

  it('mount every file and folder a setting names, writable where the service writes', () => {
    // Unset, the artifact root falls back to the container's /tmp.
    const unset = mutated('DaemonSet/dops-node-linux', (pod) =>
      setEnv(container(pod, 'inference'), 'DOPS_ARTIFACT_ROOT', undefined),
    );
    expect(violations(unset)).toEqual(
      expect.arrayContaining([
        expect.stringMatching(
          /^DaemonSet\/dops-node-linux\/inference: DOPS_ARTIFACT_ROOT=\/tmp\/dops-artifacts is on no mounted volume$/,
        ),
      ]),
    );
    const readOnly = mutated('Deployment/processing', (pod) => {
      container(pod, 'processing').volumeMounts.find((m: any) => m.name === 'inputs').readOnly = true;
    });
    expect(violations(readOnly)).toContain(
      'Deployment/processing/processing: DOPS_INPUT_ROOT=/inputs is written but mounted read-only',
    );
    // Processing writing client inputs anywhere but the nodes' shared claim.
    const ownInputs = mutated('Deployment/processing', (pod) => {
      pod['volumes'].find((v: any) => v.name === 'inputs').persistentVolumeClaim.claimName =
        'processing-scratch';
    });
    expect(violations(ownInputs)).toContain(
      'DOPS_INPUT_ROOT: on different volumes (processing-scratch, dops-inputs)',
    );
  });

  it('set what each service reads, and nothing it does not', () => {
    const stray = mutated('DaemonSet/dops-node-linux', (pod) =>
      setEnv(container(pod, 'model'), 'DOPS_REDIS_URL', 'redis://dops@redis.dops.svc:6379'),
    );
    expect(violations(stray)).toContain(
      'DaemonSet/dops-node-linux/model: DOPS_REDIS_URL is read by no setting of model',
    );
    const missing = mutated('DaemonSet/dops-node-linux', (pod) =>
      setEnv(container(pod, 'device'), 'DOPS_SECURITY_KEY_FILE', undefined),
    );
    expect(violations(missing).join('\n')).toMatch(
      /dops-node-linux\/device: device's config does not load: [\s\S]*security\.keyFile \(DOPS_SECURITY_KEY_FILE\): required/,
    );
    const noChecker = mutated('DaemonSet/dops-node-windows', (pod) =>
      setEnv(container(pod, 'postprocessing'), 'DOPS_POSTPROCESSING_SAFETY_CHECKER_PATH', undefined),
    );
    expect(violations(noChecker)).toContain(
      'DaemonSet/dops-node-windows/postprocessing: no safety checker (DOPS_POSTPROCESSING_SAFETY_CHECKER_PATH) while the default policy is flag',
    );
    const password = mutated('Deployment/processing', (pod) =>
      setEnv(container(pod, 'processing'), 'DOPS_REDIS_URL', 'redis://dops:hunter2@redis.dops.svc:6379'),
    );
    expect(violations(password)).toContain(
      'Deployment/processing/processing: the Redis URL carries a password',
    );
  });

  it('let device and memory ask the worker owners of their own node only', () => {
    const cluster = mutated('DaemonSet/dops-node-linux', (pod) =>
      setEnv(container(pod, 'memory'), 'DOPS_MEMORY_HOSTS', 'dops-model.dops.svc:50053,127.0.0.1:50056'),
    );
    expect(violations(cluster)).toEqual(
      expect.arrayContaining([
        'DaemonSet/dops-node-linux/memory: dops-model.dops.svc:50053 is no worker owner of this node',
        'DaemonSet/dops-node-linux/memory: does not ask inference',
      ]),
    );
    const wrongPort = mutated('Deployment/processing', (pod) =>
      setEnv(
        container(pod, 'processing'),
        'DOPS_PROCESSING_MODEL_SERVICE_ADDRESS',
        'dops-model.dops.svc:50054',
      ),
    );
    expect(violations(wrongPort)).toContain(
      'Deployment/processing/processing: DOPS_PROCESSING_MODEL_SERVICE_ADDRESS names dops-model.dops.svc:50054, which nothing serves',
    );
  });

  it('open only processing to clients, metrics and admin to operators', () => {
    const policies = OBJECTS.filter((o) => o.kind === 'NetworkPolicy').map((o) => o.metadata.name);
    expect(policies).toContain('default-deny-ingress');
    const noDeny = structuredClone(OBJECTS).filter(
      (o) =>
        o.metadata.name !== 'default-deny-ingress' &&
        o.metadata.name !== 'node-from-processing' &&
        o.metadata.name !== 'node-operators',
    );
    expect(violations(noDeny)).toEqual(
      expect.arrayContaining(['DaemonSet/dops-node-linux/inference:50054 is open to everyone']),
    );
    const openModel = structuredClone(OBJECTS);
    openModel.find((o) => o.metadata.name === 'node-from-processing')!['spec'].ingress[0].from = undefined;
    expect(violations(openModel)).toContain('DaemonSet/dops-node-linux/model:50053 is open to everyone');
    // Without its rule, processing cannot reach the nodes' model service.
    const closed = structuredClone(OBJECTS).filter((o) => o.metadata.name !== 'node-from-processing');
    expect(violations(closed)).toContain(
      'Deployment/processing/processing: DOPS_PROCESSING_MODEL_SERVICE_ADDRESS names dops-model.dops.svc:50053, which nothing serves',
    );
  });

  it('pin images, probe health on the plaintext port, and bound resources', () => {
    const latest = mutated(
      'Deployment/processing',
      (pod) => (container(pod, 'processing').image = 'dops/node:latest'),
    );
    expect(violations(latest)).toContain(
      "Deployment/processing/processing: image 'dops/node:latest' is not pinned",
    );
    const noStartup = mutated(
      'DaemonSet/dops-node-linux',
      (pod) => delete container(pod, 'inference').startupProbe,
    );
    expect(violations(noStartup)).toContain('DaemonSet/dops-node-linux/inference: no startupProbe');
    const tlsPort = mutated(
      'DaemonSet/dops-node-linux',
      (pod) => (container(pod, 'model').livenessProbe.grpc.port = 50053),
    );
    expect(violations(tlsPort)).toContain(
      'DaemonSet/dops-node-linux/model: livenessProbe asks port 50053, health is on 50153',
    );
    const unbounded = mutated('StatefulSet/redis', (pod) => delete pod['containers'][0].resources);
    expect(violations(unbounded)).toContain('StatefulSet/redis/redis: no limits.memory');
  });
});
