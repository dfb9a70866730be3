import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DopsError } from '@dops/errors';
import { checkConfined, confinePath } from './index';

const WHAT = 'a model root';

describe('confinePath', () => {
  let dir: string;
  let rootA: string;
  let rootB: string;
  let outside: string;

  beforeEach(() => {
    // realpath: the temp dir itself may sit behind a symlink (macOS /var → /private/var).
    dir = realpathSync(mkdtempSync(join(tmpdir(), 'dops-confine-')));
    rootA = join(dir, 'a');
    rootB = join(dir, 'b');
    outside = join(dir, 'outside');
    for (const d of [join(rootA, 'loras'), rootB, outside]) mkdirSync(d, { recursive: true });
    writeFileSync(join(rootA, 'loras', 'x.safetensors'), 'x');
    writeFileSync(join(rootB, 'y.safetensors'), 'y');
    writeFileSync(join(outside, 'secret.safetensors'), 's');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const refusal = (raw: string, roots = [rootA, rootB]) => {
    try {
      confinePath(raw, roots, 'loras[0].path', WHAT);
    } catch (err) {
      expect(err).toBeInstanceOf(DopsError);
      const e = err as DopsError;
      return { code: e.code, message: e.message, violations: e.violations };
    }
    throw new Error(`expected ${JSON.stringify(raw)} to be refused`);
  };

  it('takes relative paths from the first root that holds them, absolute ones inside a root', () => {
    expect(confinePath('loras/x.safetensors', [rootA, rootB], 'f', WHAT)).toEqual({
      root: rootA,
      path: join(rootA, 'loras', 'x.safetensors'),
      realPath: join(rootA, 'loras', 'x.safetensors'),
    });
    expect(confinePath('y.safetensors', [rootA, rootB], 'f', WHAT).root).toBe(rootB);
    // Held by no root: the first one (the opener reports it missing).
    expect(confinePath('new.png', [rootA, rootB], 'f', WHAT).realPath).toBe(join(rootA, 'new.png'));
    expect(confinePath(join(rootB, 'y.safetensors'), [rootA, rootB], 'f', WHAT).root).toBe(rootB);
  });

  it.each([
    ['a NUL byte', 'loras/x.safetensors\0.png', 'must not contain NUL bytes'],
    ['a .. segment', '../outside/secret.safetensors', "must not contain '..' segments"],
    ['a .. inside an absolute path', '/x/../etc/passwd', "must not contain '..' segments"],
    ['a backslash .. segment', '..\\outside\\secret.safetensors', "must not contain '..' segments"],
    ['a Windows path on posix', 'C:\\models\\x.safetensors', "must use '/' as the separator"],
    ['an empty path', '', 'is required'],
  ])('refuses %s with INVALID_ARGUMENT naming the field', (_name, raw, description) => {
    if (process.platform === 'win32' && raw.startsWith('C:')) return;
    expect(refusal(raw)).toEqual({
      code: 'INVALID_ARGUMENT',
      message: `loras[0].path: ${description}`,
      violations: [{ field: 'loras[0].path', description }],
    });
  });

  it('answers a path outside the roots the same whether it exists or not', () => {
    const existing = refusal(join(outside, 'secret.safetensors'));
    const missing = refusal(join(outside, 'nope.safetensors'));
    expect(existing).toEqual(missing);
    expect(existing).toEqual(refusal('/etc/passwd'));
    expect(existing.message).toBe(`loras[0].path: must be inside ${WHAT}`);
    // A sibling whose name starts like a root is not inside it.
    expect(refusal(`${rootA}-evil/x.safetensors`)).toEqual(existing);
  });

  it('follows symlinks: a file link or a folder link out of the roots is refused, existing target or not', () => {
    symlinkSync(join(outside, 'secret.safetensors'), join(rootA, 'file-link.safetensors'));
    symlinkSync(outside, join(rootA, 'folder-link'));
    symlinkSync(join(outside, 'missing.safetensors'), join(rootA, 'dangling.safetensors'));
    symlinkSync(join(dir, 'gone'), join(rootA, 'dangling-folder'));
    const viaLink = refusal('file-link.safetensors');
    expect(viaLink.code).toBe('INVALID_ARGUMENT');
    expect(viaLink.message).toMatch(
      /must be inside a model root \(its real path, symlinks resolved, is not\)/,
    );
    for (const raw of [
      join(rootA, 'file-link.safetensors'),
      'folder-link/secret.safetensors',
      'folder-link/missing.safetensors',
      'dangling.safetensors',
      'dangling-folder/x.safetensors',
    ])
      expect(refusal(raw)).toEqual(viaLink);
  });

  it('accepts a link that stays inside the roots, and hands back its target', () => {
    symlinkSync(join(rootB, 'y.safetensors'), join(rootA, 'inside.safetensors'));
    symlinkSync(rootB, join(rootA, 'b-link'));
    expect(confinePath('inside.safetensors', [rootA, rootB], 'f', WHAT)).toEqual({
      root: rootA,
      path: join(rootA, 'inside.safetensors'),
      realPath: join(rootB, 'y.safetensors'),
    });
    expect(confinePath('b-link/not-yet.png', [rootA, rootB], 'f', WHAT).realPath).toBe(
      join(rootB, 'not-yet.png'),
    );
  });

  it('takes a root configured through a symlink, named either way', () => {
    const linkedRoot = join(dir, 'linked-root');
    symlinkSync(rootB, linkedRoot);
    expect(confinePath(join(linkedRoot, 'y.safetensors'), [linkedRoot], 'f', WHAT).realPath).toBe(
      join(rootB, 'y.safetensors'),
    );
    expect(confinePath(join(rootB, 'y.safetensors'), [linkedRoot], 'f', WHAT).root).toBe(linkedRoot);
  });

  it('refuses a symlink loop and answers when no root is configured; never throws from checkConfined', () => {
    symlinkSync(join(rootA, 'loop-b'), join(rootA, 'loop-a'));
    symlinkSync(join(rootA, 'loop-a'), join(rootA, 'loop-b'));
    expect(checkConfined('loop-a', [rootA], WHAT)).toEqual({
      ok: false,
      description: 'has too many levels of symbolic links',
    });
    expect(checkConfined('x.png', [], 'the input root')).toEqual({
      ok: false,
      description: 'the input root is not configured on this service',
    });
  });
});
