/** Roles of DESIGN §1 'Trust': what a caller may do, granted by its credential. */
export const ROLES = ['client', 'operator', 'internal'] as const;
export type Role = (typeof ROLES)[number];

/** Who is calling, as proven by the call's credential (never by the request body). */
export interface Principal {
  /** Client or service id: the certificate's CN, or the token's `clientId`. */
  readonly id: string;
  readonly roles: ReadonlySet<Role>;
  /** Which credential proved it. */
  readonly via: 'mtls' | 'token';
}

/** True when `value` names a role. */
export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value);
}

/** A principal from an id and role names; unknown role names are dropped (a typo grants nothing). */
export function principalOf(id: string, roles: Iterable<string>, via: Principal['via']): Principal {
  return { id, roles: new Set([...roles].filter(isRole)), via };
}
