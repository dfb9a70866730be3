import { experimental, type ServerCredentials } from '@grpc/grpc-js';
import { Authenticator } from './authenticator';
import { TrustedCas } from './peer-certificate';
import type { SecuritySettings } from './security-settings';
import { TokenStore } from './token-store';

/** What a GrpcServer needs to serve over TLS and know its callers. */
export interface ServerSecurity {
  /** TLS with this service's certificate; client certificates requested, not required (tokens are the other way). */
  readonly credentials: ServerCredentials;
  readonly authenticator: Authenticator;
  /** Resolves once the certificate files have been read (a server binds after it); rejects when they cannot be. */
  ready(): Promise<void>;
}

// How often certificate files are re-read for rotation.
const REFRESH_MS = 60_000;

/**
 * Server credentials and authenticator from `settings`. Throws when a file is missing or
 * malformed (the CA, the token file), so a service refuses to start rather than serve open.
 */
export function createServerSecurity(settings: SecuritySettings): ServerSecurity {
  const cas = new TrustedCas(settings.caFile);
  const tokens = settings.tokensFile ? new TokenStore(settings.tokensFile) : undefined;
  // One provider for all three files, passed as both CA and identity provider: the order of
  // createCertificateProviderServerCredentials' parameters then cannot matter (in grpc-js 1.14 its
  // declared names and its constructor disagree).
  const files = new experimental.FileWatcherCertificateProvider({
    certificateFile: settings.certFile,
    privateKeyFile: settings.keyFile,
    caCertificateFile: settings.caFile,
    refreshIntervalMs: REFRESH_MS,
  });
  return {
    credentials: experimental.createCertificateProviderServerCredentials(files, files, false),
    authenticator: new Authenticator(cas, tokens),
    ready: () =>
      Promise.all([firstRead(files, 'identity', settings), firstRead(files, 'ca', settings)]).then(
        () => undefined,
      ),
  };
}

/** The provider's first read of one kind of file; the listener is removed again at once. */
function firstRead(
  files: experimental.FileWatcherCertificateProvider,
  kind: 'identity' | 'ca',
  settings: SecuritySettings,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const listener = (update: object | null) => {
      if (kind === 'identity') files.removeIdentityCertificateListener(listener);
      else files.removeCaCertificateListener(listener);
      if (update) resolve();
      else
        reject(
          new Error(
            kind === 'identity'
              ? `cannot read the certificate ${settings.certFile} or key ${settings.keyFile}`
              : `cannot read the CA file ${settings.caFile}`,
          ),
        );
    };
    if (kind === 'identity') files.addIdentityCertificateListener(listener);
    else files.addCaCertificateListener(listener);
  });
}
