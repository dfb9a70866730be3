import { createHash } from 'node:crypto';
import { mkdtempSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TokenStore } from './token-store';

const sha = (token: string) => createHash('sha256').update(token).digest('hex');

function tokenFile(entries: { token: string; clientId: string; roles: string[] }[]): string {
  const file = join(mkdtempSync(join(tmpdir(), 'dops-tokens-')), 'tokens.yaml');
  writeFileSync(
    file,
    `tokens:\n${entries
      .map(
        (e) =>
          `  - sha256: ${sha(e.token)}\n    clientId: ${e.clientId}\n    roles: [${e.roles.join(', ')}]\n`,
      )
      .join('')}`,
  );
  return file;
}

describe('TokenStore', () => {
  it('maps a token to its client and roles by hash, and drops unknown role names', () => {
    const store = new TokenStore(
      tokenFile([{ token: 'a'.repeat(32), clientId: 'alice', roles: ['client', 'root'] }]),
    );
    expect(store.lookup('a'.repeat(32))).toEqual({ id: 'alice', roles: new Set(['client']), via: 'token' });
    expect(store.lookup('b'.repeat(32))).toBeUndefined();
  });

  it('refuses a malformed file at start, naming the entry', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'dops-tokens-')), 'tokens.yaml');
    writeFileSync(file, 'tokens:\n  - sha256: not-hex\n    clientId: x\n');
    expect(() => new TokenStore(file)).toThrow(/tokens\.0\.sha256/);
  });

  it('picks up a rotated file (a Kubernetes secret update)', () => {
    jest.useFakeTimers({ now: Date.now(), doNotFake: ['nextTick'] });
    try {
      const file = tokenFile([{ token: 'old-token-0123456789', clientId: 'alice', roles: ['client'] }]);
      const store = new TokenStore(file);
      writeFileSync(
        file,
        `tokens:\n  - sha256: ${sha('new-token-0123456789')}\n    clientId: alice\n    roles: [client]\n`,
      );
      utimesSync(file, new Date(), new Date(Date.now() + 10_000));
      jest.advanceTimersByTime(6_000);
      expect(store.lookup('new-token-0123456789')?.id).toBe('alice');
      expect(store.lookup('old-token-0123456789')).toBeUndefined();
    } finally {
      jest.useRealTimers();
    }
  });
});
