import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { ROOT } from './kubernetes';

/** The validator (PyPI kubernetes-validate, pinned in python-workers/requirements/dev.txt; it bundles the schemas, so it runs offline). */
export const KUBERNETES_VALIDATE = path.join(ROOT, '.venv/bin/kubernetes-validate');

/** One object's outcome: passed, failed (with the reason), or no schema for its kind (a CRD). */
export interface SchemaResult {
  file: string;
  outcome: 'passed' | 'failed' | 'no-schema';
  /** `daemonset/dops-node-linux`, or the kind and apiVersion of an object without a schema. */
  what: string;
  message: string;
}

/**
 * Validates manifests against the Kubernetes JSON schemas of a version, strictly (unknown fields
 * fail). Throws when the validator cannot run.
 */
export function validateSchemas(files: readonly string[], kubernetesVersion: string): SchemaResult[] {
  const run = spawnSync(KUBERNETES_VALIDATE, ['--strict', '-k', kubernetesVersion, ...files], {
    encoding: 'utf8',
  });
  if (run.error) throw run.error;
  const results: SchemaResult[] = [];
  for (const line of `${run.stdout}\n${run.stderr}`.split('\n')) {
    const passed = line.match(/^INFO (\S+) passed for resource (\S+) against/);
    const noSchema = line.match(/^WARN (\S+) Couldn't find schema for kind (\S+) with api version (\S+)/);
    const failed = line.match(/^ERROR (\S+) (.*)$/);
    if (passed) results.push({ file: passed[1]!, outcome: 'passed', what: passed[2]!, message: line });
    else if (noSchema)
      results.push({
        file: noSchema[1]!,
        outcome: 'no-schema',
        what: `${noSchema[3]} ${noSchema[2]}`,
        message: line,
      });
    else if (failed) results.push({ file: failed[1]!, outcome: 'failed', what: '', message: failed[2]! });
  }
  if (run.status !== 0 && !results.some((r) => r.outcome === 'failed')) {
    results.push({
      file: files.join(' '),
      outcome: 'failed',
      what: '',
      message: `${run.stdout}${run.stderr}`.trim(),
    });
  }
  return results;
}
