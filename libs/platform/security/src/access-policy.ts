import { DopsError } from '@dops/errors';
import type { Principal, Role } from './principal';

/**
 * Which roles may call a service's methods: `default` for every method, `methods` for the ones
 * that differ (keys are the generated definition's method names, e.g. `cordonDevice`). A caller
 * needs any one of the listed roles; an empty list admits nobody.
 */
export interface AccessPolicy<Method extends string = string> {
  readonly default: readonly Role[];
  readonly methods?: Partial<Record<Method, readonly Role[]>>;
}

/** The roles that may call `method` under `policy`. */
export function rolesFor(policy: AccessPolicy, method: string): readonly Role[] {
  return (
    (policy.methods as Record<string, readonly Role[] | undefined> | undefined)?.[method] ?? policy.default
  );
}

/** Throws PERMISSION_DENIED when `principal` holds none of `roles`; `path` names the method. */
export function authorize(principal: Principal, roles: readonly Role[], path: string): void {
  if (roles.some((role) => principal.roles.has(role))) return;
  throw new DopsError(
    'PERMISSION_DENIED',
    `${path} needs the role ${roles.length ? roles.join(' or ') : '(none granted)'}; '${principal.id}' has ${
      principal.roles.size ? [...principal.roles].join(', ') : 'no role'
    }`,
    { retryable: false },
  );
}
