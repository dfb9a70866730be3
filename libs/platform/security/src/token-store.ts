import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { parse } from 'yaml';
import { z } from 'zod';
import { principalOf, type Principal } from './principal';

const tokenFile = z.object({
  tokens: z
    .array(
      z.object({
        /** Hex sha256 of the token: the file never holds a usable secret. */
        sha256: z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits'),
        clientId: z.string().min(1).max(128),
        roles: z.array(z.string()).default([]),
      }),
    )
    .default([]),
});

// Re-read a changed file (a rotated Kubernetes secret) at most this often.
const RECHECK_MS = 5_000;

/**
 * Bearer tokens from a YAML/JSON file (`tokens: [{sha256, clientId, roles}]`), e.g. a mounted
 * Kubernetes secret; re-read when the file changes. The constructor throws on a missing or
 * malformed file, naming the entry; a later bad edit keeps the last good table.
 */
export class TokenStore {
  private table = new Map<string, Principal>();
  private mtimeMs = -1;
  private checkedAt = 0;

  constructor(private readonly path: string) {
    this.reload(true);
  }

  /** The principal of `token`, or undefined when no entry matches. Throws nothing. */
  lookup(token: string): Principal | undefined {
    this.maybeReload();
    const digest = createHash('sha256').update(token, 'utf8').digest('hex');
    // Looked up by the token's hash: timing can tell at most something about a hash, never the secret.
    return this.table.get(digest);
  }

  private maybeReload(): void {
    const now = Date.now();
    if (now - this.checkedAt < RECHECK_MS) return;
    this.checkedAt = now;
    try {
      this.reload(false);
    } catch {
      // Keep serving with the last good table; the operator sees the error at the next start.
    }
  }

  private reload(force: boolean): void {
    const mtimeMs = statSync(this.path).mtimeMs;
    if (!force && mtimeMs === this.mtimeMs) return;
    const parsed = tokenFile.safeParse(parse(readFileSync(this.path, 'utf8')) ?? {});
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new Error(`token file ${this.path}: ${issue.path.join('.')}: ${issue.message}`);
    }
    const table = new Map<string, Principal>();
    for (const entry of parsed.data.tokens)
      table.set(entry.sha256, principalOf(entry.clientId, entry.roles, 'token'));
    this.table = table;
    this.mtimeMs = mtimeMs;
  }
}
