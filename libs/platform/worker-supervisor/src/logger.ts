/** One pino-style log call: structured fields first, then the message. */
export type LogFn = (fields: object, msg?: string) => void;

/**
 * The logger the supervisor writes to: any object with pino's `info/warn/error/debug/child`
 * (a pino `Logger` fits as it is).
 */
export interface SupervisorLogger {
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
  child(bindings: Record<string, unknown>): SupervisorLogger;
}

const noop: LogFn = () => undefined;

/** A logger that drops everything; the default when none is given. */
export const silentLogger: SupervisorLogger = {
  debug: noop,
  info: noop,
  warn: noop,
  error: noop,
  child: () => silentLogger,
};
