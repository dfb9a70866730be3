import { readdirSync, existsSync } from 'node:fs';
import * as path from 'node:path';
import type { ConfigDefinition, ConfigLeaf } from '@dops/config';
import { ROOT } from './kubernetes';

/** A service's config definition, as its app declares it (apps/<name>/src/config.ts). */
export type ServiceConfig = ConfigDefinition<any>;

/**
 * Every app with a config definition (apps/<name>/src/config.ts exporting one): the services a
 * deployment runs. Read from the apps' own code, so a setting added there is checked here at once.
 */
export function serviceConfigs(): Map<string, ServiceConfig> {
  const configs = new Map<string, ServiceConfig>();
  for (const app of readdirSync(path.join(ROOT, 'apps'))) {
    const file = path.join(ROOT, 'apps', app, 'src', 'config.ts');
    if (!existsSync(file)) continue;
    // The apps are processes to this project (like the e2e tests' services), not libraries: their
    // config module is read by path.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const exports = require(file) as Record<string, unknown>;
    const definition = Object.values(exports).find(isConfigDefinition);
    if (definition) configs.set(app, definition);
  }
  return configs;
}

function isConfigDefinition(value: unknown): value is ServiceConfig {
  const v = value as Partial<ServiceConfig> | undefined;
  return typeof v === 'object' && v !== null && Array.isArray(v.leaves) && typeof v.load === 'function';
}

/** A leaf's value in a loaded config. */
export function valueAt(config: unknown, leaf: ConfigLeaf): unknown {
  return leaf.path.reduce<unknown>(
    (node, key) => (node as Record<string, unknown> | undefined)?.[key],
    config,
  );
}

const PATH_LEAF = /(root|roots|path|file|dir)$/i;
const PATH_LIST_LEAF = /roots$/i;
const ADDRESS_LEAF = /(address|addresses|hosts)$/i;

/** Leaves that name files or folders (…Root, …Roots, …Path, …File, …Dir): they must be mounted. */
export function pathLeaves(definition: ServiceConfig): ConfigLeaf[] {
  return definition.leaves.filter((l) => PATH_LEAF.test(l.path[l.path.length - 1]!));
}

/** The paths a path leaf's value names: a roots list split by the platform's delimiter. */
export function pathsOf(leaf: ConfigLeaf, value: unknown, os: 'linux' | 'windows'): string[] {
  if (typeof value !== 'string' || value === '') return [];
  if (!PATH_LIST_LEAF.test(leaf.path[leaf.path.length - 1]!)) return [value];
  return value.split(os === 'windows' ? ';' : ':').filter(Boolean);
}

/** Leaves that name other services (`host:port` lists; `cuda:0=host:port` maps). */
export function addressLeaves(definition: ServiceConfig): ConfigLeaf[] {
  return definition.leaves.filter((l) => ADDRESS_LEAF.test(l.path[l.path.length - 1]!));
}

/** `host:port` entries of an address leaf's value (a list, comma-separated, or `device=host:port` pairs). */
export function addressesOf(value: unknown): { host: string; port: number }[] {
  const items = Array.isArray(value) ? value : typeof value === 'string' ? value.split(',') : [];
  return items
    .map((item: string) => item.trim().replace(/^[^=]*=/, ''))
    .filter((item) => item !== '')
    .map((item) => {
      const at = item.lastIndexOf(':');
      return { host: item.slice(0, at).replace(/^\[|\]$/g, ''), port: Number(item.slice(at + 1)) };
    });
}
