// Every Kubernetes manifest against the Kubernetes JSON schemas (kubernetes-validate, strict:
// unknown fields fail), for the oldest version the manifests need (gRPC probes are GA from 1.27)
// and the newest the validator bundles. cert-manager's and kustomize's kinds have no schema there;
// they are the only ones let through unvalidated.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { GPU_SHARING_DIR, K8S_DIR, validateSchemas } from '../src';

const FILES = [
  ...[
    'kustomization.yaml',
    'namespace.yaml',
    'redis.yaml',
    'certificates.yaml',
    'storage.yaml',
    'network-policies.yaml',
  ],
  ...['processing.yaml', 'node-linux-gpu.yaml', 'node-windows-gpu.yaml'],
].map((f) => path.join(K8S_DIR, f));
const SHARING = ['nvidia-time-slicing.yaml', 'directx-multitenancy.yaml'].map((f) =>
  path.join(GPU_SHARING_DIR, f),
);
const WITHOUT_SCHEMA = new Set([
  'cert-manager.io/v1 Issuer',
  'cert-manager.io/v1 Certificate',
  'kustomize.config.k8s.io/v1beta1 Kustomization',
]);

describe.each(['1.27.0', '1.37.0'])('Kubernetes %s schemas', (version) => {
  it('accept every manifest, and only the known CRDs go unvalidated', () => {
    const results = validateSchemas([...FILES, ...SHARING], version);
    expect(results.filter((r) => r.outcome === 'failed').map((r) => r.message)).toEqual([]);
    expect([...new Set(results.filter((r) => r.outcome === 'no-schema').map((r) => r.what))].sort()).toEqual(
      [...WITHOUT_SCHEMA].sort(),
    );
    const passed = results.filter((r) => r.outcome === 'passed').map((r) => r.what);
    expect(passed).toEqual(
      expect.arrayContaining([
        'daemonset/dops-node-linux',
        'daemonset/dops-node-windows',
        'deployment/processing',
        'statefulset/redis',
        'networkpolicy/default-deny-ingress',
      ]),
    );
  });
});

describe('the schema validation', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'dops-k8s-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const changed = (file: string, from: string, to: string) => {
    const text = readFileSync(path.join(K8S_DIR, file), 'utf8');
    expect(text).toContain(from);
    const out = path.join(dir, file);
    writeFileSync(out, text.replace(from, to));
    return out;
  };

  it('refuses an unknown field and a wrong type', () => {
    const unknown = validateSchemas(
      [changed('node-linux-gpu.yaml', 'startupProbe:', 'startupProbes:')],
      '1.37.0',
    );
    expect(unknown.find((r) => r.outcome === 'failed')?.message).toMatch(/dops-node-linux.*startupProbes/);
    const wrongType = validateSchemas(
      [changed('processing.yaml', 'replicas: 2', "replicas: 'two'")],
      '1.37.0',
    );
    expect(wrongType.find((r) => r.outcome === 'failed')?.message).toMatch(
      /spec\.replicas: 'two' is not of type 'integer'/,
    );
  });
});
