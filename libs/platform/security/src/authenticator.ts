import type { PeerCertificate } from 'node:tls';
import type { Metadata } from '@grpc/grpc-js';
import { DopsError } from '@dops/errors';
import { principalFromCertificate, type TrustedCas } from './peer-certificate';
import type { Principal } from './principal';
import type { TokenStore } from './token-store';

/** What grpc-js's `call.getAuthContext()` tells about the transport. */
export interface TransportAuth {
  sslPeerCertificate?: PeerCertificate;
}

const BEARER = /^Bearer ([\x21-\x7e]{16,512})$/;

/**
 * Proves who is calling: a bearer token (`authorization: Bearer <token>`) when the call carries
 * one, else the mTLS client certificate. Throws UNAUTHENTICATED when neither proves anything — a
 * bad token is refused even when a certificate is present, so a credential is never ignored.
 */
export class Authenticator {
  constructor(
    private readonly cas: TrustedCas,
    private readonly tokens: TokenStore | undefined,
  ) {}

  /** The caller of a call with `metadata` over `auth`; throws UNAUTHENTICATED. */
  authenticate(metadata: Metadata, auth: TransportAuth): Principal {
    const header = metadata.get('authorization');
    if (header.length > 0) {
      if (header.length > 1) throw unauthenticated('more than one authorization header');
      const match = BEARER.exec(String(header[0]));
      if (!match) throw unauthenticated('the authorization header is not "Bearer <token>"');
      if (!this.tokens)
        throw unauthenticated('this server accepts no bearer tokens; use a client certificate');
      const principal = this.tokens.lookup(match[1]!);
      if (!principal) throw unauthenticated('the bearer token is not valid');
      return principal;
    }
    const principal = principalFromCertificate(auth.sslPeerCertificate, this.cas.certificates);
    if (principal) return principal;
    throw unauthenticated(
      auth.sslPeerCertificate
        ? 'the client certificate is not issued by a trusted CA, or has expired'
        : 'no credential: present a client certificate or a bearer token',
    );
  }
}

function unauthenticated(message: string): DopsError {
  return new DopsError('UNAUTHENTICATED', message, { retryable: false });
}
