import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from '../test/safetensors-writer';
import { PathGuard } from './path-guard';

describe('PathGuard', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let rootA: string;
  let rootB: string;
  let guard: PathGuard;

  beforeEach(async () => {
    ({ dir, cleanup } = await tempDir());
    rootA = join(dir, 'a');
    rootB = join(dir, 'b');
    await mkdir(join(rootA, 'loras'), { recursive: true });
    await mkdir(rootB);
    await mkdir(join(dir, 'outside'));
    await writeFile(join(rootA, 'loras', 'x.safetensors'), 'x');
    await writeFile(join(rootB, 'y.safetensors'), 'y');
    await writeFile(join(dir, 'outside', 'secret'), 's');
    guard = new PathGuard([rootA, rootB]);
  });
  afterEach(() => cleanup());

  it('resolves relative paths against each root in order, and absolute ones inside a root', async () => {
    expect(await guard.confine('loras/x.safetensors')).toMatchObject({
      root: rootA,
      relPath: 'loras/x.safetensors',
    });
    expect(await guard.confine('y.safetensors')).toMatchObject({
      root: rootB,
      path: join(rootB, 'y.safetensors'),
    });
    expect(await guard.confine(join(rootA, 'loras', 'x.safetensors'))).toMatchObject({ root: rootA });
  });

  it.each(['../x', 'loras/../../outside/secret', '..\\outside\\secret', 'a/..'])(
    'refuses a .. segment: %s',
    async (input) => {
      await expect(guard.confine(input, 'model_path')).rejects.toMatchObject({
        code: 'INVALID_ARGUMENT',
        violations: [{ field: 'model_path', description: expect.stringMatching(/\.\./) }],
      });
    },
  );

  it('refuses an absolute path outside the roots, an empty path and NUL bytes', async () => {
    await expect(guard.confine(join(dir, 'outside', 'secret'))).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(/outside/),
    });
    await expect(guard.confine('/etc/passwd')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(guard.confine('')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(guard.confine('x\0y')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('refuses a symlink whose target escapes the roots, allows one that stays inside', async () => {
    await symlink(join(dir, 'outside', 'secret'), join(rootA, 'escape.safetensors'));
    await symlink(join(dir, 'outside'), join(rootA, 'escape-dir'));
    await symlink(join(rootB, 'y.safetensors'), join(rootA, 'inside.safetensors'));
    await expect(guard.confine('escape.safetensors')).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(/symlink/),
    });
    await expect(guard.confine('escape-dir/secret')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(await guard.confine('inside.safetensors')).toMatchObject({
      root: rootA,
      realPath: join(rootB, 'y.safetensors'),
    });
  });

  it('answers NOT_FOUND for a path no root holds', async () => {
    await expect(guard.confine('missing.safetensors')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(guard.confine(join(rootA, 'missing'))).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('needs at least one root', () => {
    expect(() => new PathGuard([])).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});
