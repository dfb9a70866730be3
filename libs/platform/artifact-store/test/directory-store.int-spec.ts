import { mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { DirectoryArtifactStore } from '../src/index';
import { storeContract } from './store-contract';

describe('DirectoryArtifactStore', () => {
  const root = mkdtempSync(path.join(tmpdir(), 'dops-store-'));
  const store = new DirectoryArtifactStore(root);
  storeContract(() => store);

  it('keeps a file already at its key where it is, and writes others owner-only', async () => {
    const file = path.join(root, 'in-place.png');
    writeFileSync(file, 'png');
    const before = statSync(file).ino;
    await store.putFile('in-place.png', file);
    expect(statSync(file).ino).toBe(before);
    await store.put('sub/copied.png', Buffer.from('x'));
    expect(statSync(path.join(root, 'sub/copied.png')).mode & 0o777).toBe(0o600);
    expect(store.localPath('sub/copied.png')).toBe(path.join(root, 'sub/copied.png'));
  });
});
