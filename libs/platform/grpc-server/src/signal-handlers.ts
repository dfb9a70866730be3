import type { Logger } from '@dops/telemetry';
import type { GrpcServer, ShutdownHook } from './grpc-server';

export interface SignalHandlerOptions {
  /** Run after the server stopped, in order (e.g. `telemetry.shutdown`). */
  hooks?: ShutdownHook[];
  logger?: Logger;
  /** Default `process.exit`; tests replace it. */
  exit?: (code: number) => void;
  /** Default SIGTERM and SIGINT. */
  signals?: NodeJS.Signals[];
  /**
   * The whole shutdown's bound: past it the process exits 1 whatever is still closing (a Redis
   * that is down, a worker that ignores SIGTERM). Default 30 000 ms.
   */
  deadlineMs?: number;
}

/**
 * On SIGTERM/SIGINT: graceful `server.shutdown()`, then the hooks, then exit 0 (1 when a hook
 * throws); exit 1 when all that takes longer than `deadlineMs`. A second signal exits 1 at once.
 * Returns a function that removes the handlers.
 */
export function installSignalHandlers(server: GrpcServer, options: SignalHandlerOptions = {}): () => void {
  const exit = options.exit ?? ((code: number) => process.exit(code));
  const signals = options.signals ?? ['SIGTERM', 'SIGINT'];
  let shuttingDown = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (shuttingDown) {
      options.logger?.warn({ signal }, 'second signal during shutdown; exiting now');
      exit(1);
      return;
    }
    shuttingDown = true;
    const deadlineMs = options.deadlineMs ?? 30_000;
    options.logger?.info({ signal, deadlineMs }, 'shutting down');
    const deadline = setTimeout(() => {
      options.logger?.error({ deadlineMs }, 'shutdown did not finish in time; exiting now');
      exit(1);
    }, deadlineMs).unref();
    void (async () => {
      let code = 0;
      await server.shutdown();
      for (const hook of options.hooks ?? []) {
        try {
          await hook();
        } catch (err) {
          code = 1;
          options.logger?.error({ err }, 'shutdown hook failed');
        }
      }
      clearTimeout(deadline);
      exit(code);
    })();
  };
  for (const signal of signals) process.on(signal, onSignal);
  return () => {
    for (const signal of signals) process.removeListener(signal, onSignal);
  };
}
