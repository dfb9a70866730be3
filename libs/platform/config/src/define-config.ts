import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { ConfigError, type ConfigIssue, type ConfigSource } from './config-error';
import { coerceEnvValue, describeExpected } from './coerce';
import { configLeaves, isObjectSchema, isOptional, unwrap, type ConfigLeaf } from './schema-walk';

/** Deeply optional input, for defaults that a service layers under file and environment. */
export type DeepPartial<T> = T extends readonly unknown[]
  ? T
  : T extends object
    ? { [K in keyof T]?: DeepPartial<T[K]> }
    : T;

export interface DefineConfigOptions<S extends z.ZodObject> {
  /** Names the configuration in error messages, e.g. `device`. */
  name: string;
  /** Prefix of every environment variable. Default `DOPS_`. */
  envPrefix?: string;
  /** Lowest layer, under the file and the environment (e.g. `{ telemetry: { serviceName: 'dops-device' } }`). */
  defaults?: DeepPartial<z.input<S>>;
}

export interface LoadConfigOptions {
  /** Environment to read. Default `process.env` (the one place in dops that reads it). */
  env?: Readonly<Record<string, string | undefined>>;
  /** YAML or JSON file; default: the path in `<prefix>CONFIG_FILE`, else none. */
  file?: string;
}

/** A validated configuration shape and the one way to load it. */
export interface ConfigDefinition<S extends z.ZodObject> {
  readonly name: string;
  readonly schema: S;
  readonly envPrefix: string;
  /** Every leaf setting with its environment variable, for `--help` output and docs. */
  readonly leaves: readonly ConfigLeaf[];
  /**
   * Merges defaults < file < environment, coerces environment strings, validates once.
   * Throws ConfigError listing every bad key; returns a deeply frozen value.
   */
  load(options?: LoadConfigOptions): Readonly<z.output<S>>;
}

type Json = Record<string, unknown>;

/** Declares a configuration; nothing is read until `load()`. */
export function defineConfig<S extends z.ZodObject>(
  schema: S,
  options: DefineConfigOptions<S>,
): ConfigDefinition<S> {
  const envPrefix = options.envPrefix ?? 'DOPS_';
  const leaves = configLeaves(schema, envPrefix);
  return {
    name: options.name,
    schema,
    envPrefix,
    leaves,
    load: (loadOptions = {}) =>
      load(schema, options.name, envPrefix, leaves, options.defaults ?? {}, loadOptions),
  };
}

interface Origin {
  source: ConfigSource;
  raw: unknown;
}

function load<S extends z.ZodObject>(
  schema: S,
  name: string,
  envPrefix: string,
  leaves: readonly ConfigLeaf[],
  defaults: unknown,
  options: LoadConfigOptions,
): Readonly<z.output<S>> {
  const env = options.env ?? process.env;
  const issues: ConfigIssue[] = [];
  const origins = new Map<string, Origin>();
  const input: Json = structuredClone(defaults as Json);

  const file = options.file ?? nonEmpty(env[`${envPrefix}CONFIG_FILE`]);
  if (file !== undefined) {
    const fromFile = readConfigFile(file, issues, envPrefix);
    if (fromFile) {
      issues.push(...unknownKeys(schema, fromFile, []));
      mergeInto(input, fromFile, [], origins);
    }
  }

  for (const leaf of leaves) {
    const raw = nonEmpty(env[leaf.envVar]);
    if (raw === undefined) continue;
    setPath(input, leaf.path, coerceEnvValue(leaf.schema, raw));
    origins.set(leaf.path.join('.'), { source: 'env', raw });
  }

  fillObjects(schema, input);
  const result = schema.safeParse(input, { reportInput: true });
  if (!result.success) issues.push(...toIssues(result.error.issues, leaves, origins));
  if (issues.length > 0) throw new ConfigError(name, issues);
  return deepFreeze(result.data as z.output<S>);
}

function nonEmpty(value: string | undefined): string | undefined {
  // An empty variable means "unset", as in OpenTelemetry's environment handling.
  return value === undefined || value.trim() === '' ? undefined : value;
}

function readConfigFile(file: string, issues: ConfigIssue[], envPrefix: string): Json | undefined {
  const envVar = `${envPrefix}CONFIG_FILE`;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    issues.push({
      path: file,
      envVar,
      source: 'file',
      reason: `cannot read config file: ${(err as Error).message}`,
    });
    return undefined;
  }
  let parsed: unknown;
  try {
    // YAML 1.2 is a superset of JSON, so one parser reads both.
    parsed = parseYaml(text);
  } catch (err) {
    issues.push({
      path: file,
      envVar,
      source: 'file',
      reason: `cannot parse config file: ${(err as Error).message}`,
    });
    return undefined;
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== 'object' || Array.isArray(parsed)) {
    issues.push({
      path: file,
      envVar,
      source: 'file',
      reason: 'config file must hold a mapping at the top level',
    });
    return undefined;
  }
  return parsed as Json;
}

function unknownKeys(schema: z.ZodObject, value: Json, parent: string[]): ConfigIssue[] {
  const shape = schema.shape as Record<string, z.ZodType>;
  const issues: ConfigIssue[] = [];
  for (const [key, child] of Object.entries(value)) {
    const path = [...parent, key];
    const childSchema = shape[key];
    if (!childSchema) {
      issues.push({ path: path.join('.'), source: 'file', reason: 'unknown key' });
    } else if (isObjectSchema(childSchema) && isPlainObject(child)) {
      issues.push(...unknownKeys(unwrap(childSchema) as z.ZodObject, child, path));
    }
  }
  return issues;
}

function isPlainObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function mergeInto(target: Json, source: Json, parent: string[], origins: Map<string, Origin>): void {
  for (const [key, value] of Object.entries(source)) {
    const path = [...parent, key];
    if (isPlainObject(value)) {
      if (!isPlainObject(target[key])) target[key] = {};
      mergeInto(target[key] as Json, value, path, origins);
    } else {
      target[key] = structuredClone(value);
      origins.set(path.join('.'), { source: 'file', raw: value });
    }
  }
}

function setPath(target: Json, path: string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    if (!isPlainObject(node[key])) node[key] = {};
    node = node[key] as Json;
  }
  node[path[path.length - 1]!] = value;
}

/** Creates absent required sub-objects so their fields' own defaults apply (zod 4 does not descend into a missing object). */
function fillObjects(schema: z.ZodObject, value: Json): void {
  for (const [key, child] of Object.entries(schema.shape as Record<string, z.ZodType>)) {
    if (!isObjectSchema(child)) continue;
    if (value[key] === undefined && !isOptional(child)) value[key] = {};
    if (isPlainObject(value[key])) fillObjects(unwrap(child) as z.ZodObject, value[key] as Json);
  }
}

function toIssues(
  zodIssues: z.core.$ZodIssue[],
  leaves: readonly ConfigLeaf[],
  origins: Map<string, Origin>,
): ConfigIssue[] {
  const byPath = new Map<string, ConfigIssue>();
  for (const zi of zodIssues) {
    const path = zi.path.map(String).join('.');
    if (byPath.has(path)) continue; // one line per key: the first reason is the one to fix
    const leaf = leaves.find((l) => l.path.join('.') === path);
    const origin = origins.get(path);
    byPath.set(path, {
      path,
      envVar: leaf?.envVar,
      source: origin?.source ?? 'default',
      reason: reasonFor(zi, leaf, origin),
    });
  }
  return [...byPath.values()];
}

function reasonFor(
  issue: z.core.$ZodIssue,
  leaf: ConfigLeaf | undefined,
  origin: Origin | undefined,
): string {
  const input = origin?.raw ?? (issue as { input?: unknown }).input;
  if (input === undefined) return 'required';
  const expected = leaf ? describeExpected(leaf.schema) : undefined;
  const got = `got ${JSON.stringify(input)}`;
  const shapeIssue = ['invalid_type', 'too_small', 'too_big', 'invalid_value', 'not_multiple_of'].includes(
    issue.code,
  );
  if (expected && shapeIssue) return `expected ${expected}, ${got}`;
  return `${issue.message}, ${got}`;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
