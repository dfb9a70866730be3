import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type { PeerCertificate } from 'node:tls';
import { principalOf, type Principal } from './principal';

const RECHECK_MS = 5_000;

/**
 * The CA certificates client certificates must be issued by, read from a PEM bundle and re-read
 * when the file changes. The constructor throws when the file is missing or holds no certificate.
 */
export class TrustedCas {
  private cas: X509Certificate[] = [];
  private mtimeMs = -1;
  private checkedAt = 0;

  constructor(private readonly path: string) {
    this.reload();
    if (this.cas.length === 0) throw new Error(`CA file ${path} holds no certificate`);
  }

  get certificates(): readonly X509Certificate[] {
    const now = Date.now();
    if (now - this.checkedAt >= RECHECK_MS) {
      this.checkedAt = now;
      try {
        this.reload();
      } catch {
        // keep the last good bundle
      }
    }
    return this.cas;
  }

  private reload(): void {
    const mtimeMs = statSync(this.path).mtimeMs;
    if (mtimeMs === this.mtimeMs) return;
    const pem = readFileSync(this.path, 'utf8');
    const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    this.cas = blocks.map((block) => new X509Certificate(block));
    this.mtimeMs = mtimeMs;
  }
}

/**
 * The principal a TLS peer certificate proves: CN = id, each OU = a role. Undefined when there
 * is no certificate, or it was not issued (and signed) by one of `cas`, or it is out of date.
 * The TLS layer requests but does not require client certificates (tokens are the other way in),
 * so the chain is checked here.
 */
export function principalFromCertificate(
  peer: PeerCertificate | undefined,
  cas: readonly X509Certificate[],
  now = new Date(),
): Principal | undefined {
  if (!peer?.raw) return undefined;
  const cert = new X509Certificate(peer.raw);
  if (now < new Date(cert.validFrom) || now > new Date(cert.validTo)) return undefined;
  if (cert.ca) return undefined;
  const issuer = cas.find((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey));
  if (!issuer) return undefined;
  const fields = subjectFields(cert.subject);
  const id = fields.get('CN')?.[0];
  if (!id) return undefined;
  return principalOf(id, fields.get('OU') ?? [], 'mtls');
}

/** `CN=a\nOU=b\nOU=c` → {CN: [a], OU: [b, c]}. */
function subjectFields(subject: string): Map<string, string[]> {
  const fields = new Map<string, string[]>();
  for (const line of subject.split('\n')) {
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const key = line.slice(0, eq);
    fields.set(key, [...(fields.get(key) ?? []), line.slice(eq + 1)]);
  }
  return fields;
}
