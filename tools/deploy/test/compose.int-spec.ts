// The compose file (deploy/docker-compose.yml) loaded as Docker Compose loads it (compose-go:
// schema, interpolation, semantics; built once into var/), then held to the same invariants as
// the Kubernetes manifests where they apply to one host.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { parse, stringify } from 'yaml';
import {
  COMPOSE_FILE,
  checkAddresses,
  checkComposeDependencies,
  checkImages,
  checkMounts,
  checkNodeViews,
  checkProbes,
  checkSafety,
  checkSecrets,
  checkSharedStorage,
  composeResolver,
  composeWorkloads,
  loadCompose,
  loadContainers,
  serviceConfigs,
} from '../src';

const configs = serviceConfigs();

function violations(project: Record<string, any>): string[] {
  const workloads = composeWorkloads(project);
  const { loaded, violations: env } = loadContainers(workloads, configs);
  return [
    ...env,
    ...checkMounts(loaded),
    ...checkSecrets(loaded),
    ...checkNodeViews(loaded),
    ...checkAddresses(loaded, composeResolver(workloads, loaded)),
    ...checkImages(workloads),
    ...checkProbes(workloads, loaded),
    ...checkSharedStorage(loaded, new Map()),
    ...checkSafety(loaded),
    ...checkComposeDependencies(workloads),
  ];
}

/** The compose file with one change, loaded from a copy beside the original (same relative paths). */
function loadChanged(change: (doc: Record<string, any>) => void): ReturnType<typeof loadCompose> {
  const doc = parse(readFileSync(COMPOSE_FILE, 'utf8'), { merge: true }) as Record<string, any>;
  change(doc);
  const dir = mkdtempSync(path.join(tmpdir(), 'dops-compose-'));
  try {
    const file = path.join(dir, 'docker-compose.yml');
    writeFileSync(file, stringify(doc).replaceAll('../', `${path.dirname(COMPOSE_FILE)}/../`));
    return loadCompose([file]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('docker-compose.yml', () => {
  const loadedFile = loadCompose([COMPOSE_FILE]);

  it('loads as Docker Compose loads it', () => {
    expect(loadedFile.error).toBeUndefined();
    expect(Object.keys(loadedFile.project!['services']).sort()).toEqual([
      'device',
      'inference',
      'memory',
      'model',
      'postprocessing',
      'processing',
      'redis',
    ]);
  });

  it('is refused when it breaks the compose spec or its own references', () => {
    const badKey = loadChanged((doc) => (doc['services'].device.healthcheck.intervall = '5s'));
    expect(badKey.ok).toBe(false);
    expect(badKey.error).toMatch(/intervall/);
    const unknownDependency = loadChanged(
      (doc) => (doc['services'].device.depends_on = { gpu: { condition: 'service_healthy' } }),
    );
    expect(unknownDependency.ok).toBe(false);
    expect(unknownDependency.error).toMatch(/gpu/);
  });

  it('holds every invariant', () => {
    expect(violations(loadedFile.project!)).toEqual([]);
  });

  it('configures the safety checker the default policy needs, under the mounted models', () => {
    const post = loadedFile.project!['services'].postprocessing;
    expect(post.environment.DOPS_POSTPROCESSING_SAFETY_CHECKER_PATH).toBe(
      '/data/models/safety-checker-tiny-passes-all',
    );
    const custom = loadCompose([COMPOSE_FILE], { DOPS_SAFETY_CHECKER: '/data/models/safety-checker' });
    expect(
      custom.project!['services'].postprocessing.environment.DOPS_POSTPROCESSING_SAFETY_CHECKER_PATH,
    ).toBe('/data/models/safety-checker');
    const outside = loadCompose([COMPOSE_FILE], { DOPS_SAFETY_CHECKER: '/opt/checker' });
    expect(violations(outside.project!)).toContain(
      'compose/postprocessing/postprocessing: DOPS_POSTPROCESSING_SAFETY_CHECKER_PATH=/opt/checker is on no mounted volume',
    );
  });

  it('catches a service without a healthcheck, a started-only dependency and a stray variable', () => {
    const changed = loadChanged((doc) => {
      delete doc['services'].model.healthcheck;
      doc['services'].device.depends_on.inference.condition = 'service_started';
      doc['services'].memory.environment.DOPS_DEVICE_HOSTS = 'inference:50054';
    });
    expect(violations(changed.project!)).toEqual(
      expect.arrayContaining([
        'compose/model/model: no healthcheck',
        'compose/device: depends on inference with service_started',
        'compose/memory/memory: DOPS_DEVICE_HOSTS is read by no setting of memory',
      ]),
    );
  });
});
