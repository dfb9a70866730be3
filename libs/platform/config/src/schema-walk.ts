import { globalRegistry, type z } from 'zod';
import { toEnvName } from './env-name';

/** One leaf setting of a config schema: where it lives and which variable sets it. */
export interface ConfigLeaf {
  path: string[];
  envVar: string;
  /** The schema with optional/default/nullable wrappers removed. */
  schema: z.ZodType;
}

type AnySchema = z.ZodType;

const WRAPPERS = new Set(['optional', 'default', 'prefault', 'nullable', 'readonly', 'catch', 'nonoptional']);

/** Strips optional/default/... wrappers (and a pipe's input side) down to the value's own schema. */
export function unwrap(schema: AnySchema): AnySchema {
  let current = schema;
  for (;;) {
    const def = current._zod.def as { type: string; innerType?: AnySchema; in?: AnySchema };
    if (WRAPPERS.has(def.type) && def.innerType) current = def.innerType;
    else if (def.type === 'pipe' && def.in) current = def.in;
    else return current;
  }
}

/** True when the schema is (after unwrapping) a plain object with a shape to descend into. */
export function isObjectSchema(schema: AnySchema): schema is z.ZodObject {
  return unwrap(schema)._zod.def.type === 'object';
}

/** True when the schema itself accepts `undefined` (optional), so an absent object stays absent. */
export function isOptional(schema: AnySchema): boolean {
  return (schema._zod as { optin?: string }).optin === 'optional' && schema._zod.def.type === 'optional';
}

function envOverride(schema: AnySchema): string | undefined {
  let current: AnySchema | undefined = schema;
  while (current) {
    const meta = globalRegistry.get(current) as { env?: unknown } | undefined;
    if (typeof meta?.env === 'string') return meta.env;
    const def = current._zod.def as { type: string; innerType?: AnySchema };
    current = WRAPPERS.has(def.type) ? def.innerType : undefined;
  }
  return undefined;
}

/** Every leaf (non-object) setting of an object schema, depth first, with its environment variable. */
export function configLeaves(schema: z.ZodObject, envPrefix: string, parent: string[] = []): ConfigLeaf[] {
  const leaves: ConfigLeaf[] = [];
  for (const [key, child] of Object.entries(schema.shape as Record<string, AnySchema>)) {
    const path = [...parent, key];
    if (isObjectSchema(child)) {
      leaves.push(...configLeaves(unwrap(child) as z.ZodObject, envPrefix, path));
    } else {
      leaves.push({ path, envVar: envOverride(child) ?? toEnvName(envPrefix, path), schema: unwrap(child) });
    }
  }
  return leaves;
}
