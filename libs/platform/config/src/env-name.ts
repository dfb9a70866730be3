/**
 * The environment mapping rule: a setting's environment variable is the prefix followed by its
 * key path, each key turned from camelCase into SCREAMING_SNAKE_CASE and the keys joined by `_`.
 *
 *   grpc.port                  → DOPS_GRPC_PORT
 *   shutdownGraceMs            → DOPS_SHUTDOWN_GRACE_MS
 *   worker.handshakeTimeoutMs  → DOPS_WORKER_HANDSHAKE_TIMEOUT_MS
 *
 * A field may pin another name with zod metadata, e.g. `.meta({ env: 'DOPS_BACKEND' })`.
 */
export function toEnvName(prefix: string, path: readonly string[]): string {
  return prefix + path.map(toScreamingSnake).join('_');
}

/** `handshakeTimeoutMs` → `HANDSHAKE_TIMEOUT_MS`; `otlpEndpoint` → `OTLP_ENDPOINT`; `http2` → `HTTP2`. */
export function toScreamingSnake(key: string): string {
  return key
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1_$2')
    .replace(/[^A-Za-z0-9]+/g, '_')
    .toUpperCase();
}
