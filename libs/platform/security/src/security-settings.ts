import { z } from 'zod';

/**
 * Transport security of a service (config key `security`; env DOPS_SECURITY_*). TLS is always on:
 * there is no plaintext mode. Files are PEM; all are re-read when they change (rotation).
 */
export const securitySettings = z.object({
  /** CA bundle that issued the peers' certificates (servers and clients). */
  caFile: z.string().min(1),
  /** This service's certificate (its identity for mTLS, both as server and as client). */
  certFile: z.string().min(1),
  keyFile: z.string().min(1),
  /** Bearer tokens (`tokens: [{sha256, clientId, roles}]`); unset = client certificates only. */
  tokensFile: z.string().min(1).optional(),
});

export type SecuritySettings = z.output<typeof securitySettings>;
