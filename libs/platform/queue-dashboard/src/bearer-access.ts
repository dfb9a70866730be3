import type { Principal, Role, TokenStore } from '@dops/security';

/** What a request to the dashboard may do, decided from its `authorization` header alone. */
export type DashboardAccess =
  | { ok: true; principal: Principal }
  | { ok: false; status: 401 | 403; reason: string };

const BEARER = /^Bearer ([\x21-\x7e]{16,512})$/;

/**
 * Checks a bearer token against the service's token file: 401 without a valid token, 403 when
 * its principal holds none of `roles`. Throws nothing.
 */
export function dashboardAccess(
  header: string | undefined,
  tokens: TokenStore | undefined,
  roles: readonly Role[],
): DashboardAccess {
  if (!header) return { ok: false, status: 401, reason: 'a bearer token is required' };
  const match = BEARER.exec(header);
  if (!match) return { ok: false, status: 401, reason: 'the authorization header is not "Bearer <token>"' };
  const principal = match[1] ? tokens?.lookup(match[1]) : undefined;
  if (!principal) return { ok: false, status: 401, reason: 'the bearer token is not valid' };
  if (!roles.some((r) => principal.roles.has(r)))
    return {
      ok: false,
      status: 403,
      reason: `needs the role ${roles.join(' or ')}; '${principal.id}' has none`,
    };
  return { ok: true, principal };
}
