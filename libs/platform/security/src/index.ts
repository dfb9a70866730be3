export { ROLES, isRole, principalOf } from './principal';
export type { Principal, Role } from './principal';
export { authorize, rolesFor } from './access-policy';
export type { AccessPolicy } from './access-policy';
export { Authenticator } from './authenticator';
export type { TransportAuth } from './authenticator';
export { TokenStore } from './token-store';
export { TrustedCas, principalFromCertificate } from './peer-certificate';
export { securitySettings } from './security-settings';
export type { SecuritySettings } from './security-settings';
export { createServerSecurity } from './server-security';
export type { ServerSecurity } from './server-security';
export { clientCredentials, serviceClientCredentials } from './client-credentials';
export type { ClientCredentialSources } from './client-credentials';
// Development credentials (tools/dev-credentials.sh): the local run and the tests use the real path.
export {
  anonymousCredentials,
  devCredentialsDir,
  devSecurityEnv,
  devSecuritySettings,
  devToken,
  testCredentials,
  testServerSecurity,
} from './dev-credentials';
