import type { z } from 'zod';
import { ConfigError } from './config-error';
import type { ConfigDefinition } from './define-config';

/**
 * For an app's entry point: loads the config, or prints every bad key (ConfigError's message)
 * to stderr and exits with code 2 — a clear message instead of a stack trace.
 */
export function loadConfigOrExit<S extends z.ZodObject>(
  definition: ConfigDefinition<S>,
): Readonly<z.output<S>> {
  try {
    return definition.load();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`${err.message}\n`);
    process.exit(2);
  }
}
