import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import type { ChannelCredentials } from '@grpc/grpc-js';
import { clientCredentials } from './client-credentials';
import type { SecuritySettings } from './security-settings';
import { createServerSecurity, type ServerSecurity } from './server-security';

const ROOT = path.resolve(__dirname, '../../../..');

/**
 * The development credentials of tools/dev-credentials.sh (CA, a certificate per service and
 * per client, tokens), generated on first use. Tests run the real TLS + auth path with them.
 * Identities: services device…postprocessing (internal); clients demo, alice, bob (client),
 * ops (operator, client), nobody (no role).
 */
export function devCredentialsDir(): string {
  const dir = process.env['DOPS_CREDENTIALS_DIR'] ?? path.join(ROOT, 'var/credentials');
  if (!existsSync(path.join(dir, 'tokens.yaml')))
    execFileSync('bash', [path.join(ROOT, 'tools/dev-credentials.sh')], { stdio: 'ignore' });
  return dir;
}

/** Security settings of the identity `name` (a service or a client): its certificate, the CA, the token file. */
export function devSecuritySettings(name = 'processing'): SecuritySettings {
  const dir = devCredentialsDir();
  return {
    caFile: path.join(dir, 'ca.crt'),
    certFile: path.join(dir, `${name}.crt`),
    keyFile: path.join(dir, `${name}.key`),
    tokensFile: path.join(dir, 'tokens.yaml'),
  };
}

/** DOPS_SECURITY_* variables that make a service process `name` serve with its development identity. */
export function devSecurityEnv(name: string): Record<string, string> {
  const s = devSecuritySettings(name);
  return {
    DOPS_SECURITY_CA_FILE: s.caFile,
    DOPS_SECURITY_CERT_FILE: s.certFile,
    DOPS_SECURITY_KEY_FILE: s.keyFile,
    DOPS_SECURITY_TOKENS_FILE: s.tokensFile!,
  };
}

/** Server security of a test server, as the service `name` (default `processing`). */
export function testServerSecurity(name = 'processing'): ServerSecurity {
  return createServerSecurity(devSecuritySettings(name));
}

/** The development bearer token of client `name`. */
export function devToken(name: string): string {
  return readFileSync(path.join(devCredentialsDir(), 'tokens', `${name}.token`), 'utf8').trim();
}

/**
 * Channel credentials of identity `name`: by its bearer token (default) or by its mTLS
 * certificate. Services (`inference`, …) have certificates only.
 */
export function testCredentials(name: string, via: 'token' | 'mtls' = 'token'): ChannelCredentials {
  const s = devSecuritySettings(name);
  return via === 'token'
    ? clientCredentials({ caFile: s.caFile, token: devToken(name) })
    : clientCredentials({ caFile: s.caFile, certFile: s.certFile, keyFile: s.keyFile });
}

/** TLS that trusts the development CA and proves nothing: what health probes and strangers without a credential use. */
export function anonymousCredentials(): ChannelCredentials {
  return clientCredentials({ caFile: devSecuritySettings().caFile });
}
