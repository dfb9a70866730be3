import { readFileSync } from 'node:fs';
import { credentials, Metadata, type ChannelCredentials } from '@grpc/grpc-js';

export interface ClientCredentialSources {
  /** CA bundle that issued the server's certificate. */
  caFile: string;
  /** mTLS identity (a service's own certificate, or a client certificate). */
  certFile?: string;
  keyFile?: string;
  /** A bearer token, sent as `authorization: Bearer <token>` on every call. */
  token?: string;
}

/**
 * TLS channel credentials trusting `caFile`, with a client certificate and/or a bearer token.
 * Throws when a file cannot be read or only one of cert/key is given. Files are read once:
 * a long-lived client picks up rotated files when it is re-created.
 */
export function clientCredentials(sources: ClientCredentialSources): ChannelCredentials {
  if ((sources.certFile === undefined) !== (sources.keyFile === undefined))
    throw new Error('a client certificate needs both certFile and keyFile');
  const tls = credentials.createSsl(
    readFileSync(sources.caFile),
    sources.keyFile ? readFileSync(sources.keyFile) : null,
    sources.certFile ? readFileSync(sources.certFile) : null,
  );
  const token = sources.token?.trim();
  if (!token) return tls;
  const bearer = credentials.createFromMetadataGenerator((_params, callback) => {
    const metadata = new Metadata();
    metadata.set('authorization', `Bearer ${token}`);
    callback(null, metadata);
  });
  return credentials.combineChannelCredentials(tls, bearer);
}

/** Client credentials of a service calling another: its own certificate (role `internal` by its OU). */
export function serviceClientCredentials(settings: {
  caFile: string;
  certFile: string;
  keyFile: string;
}): ChannelCredentials {
  return clientCredentials({
    caFile: settings.caFile,
    certFile: settings.certFile,
    keyFile: settings.keyFile,
  });
}
