import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadPaths } from './load-paths';

describe('loadPaths', () => {
  let dir: string;
  let models: string;
  let other: string;

  beforeEach(() => {
    dir = realpathSync(mkdtempSync(join(tmpdir(), 'dops-load-paths-')));
    models = join(dir, 'models');
    other = join(dir, 'other');
    mkdirSync(join(models, 'configs'), { recursive: true });
    mkdirSync(other);
    writeFileSync(join(other, 'x.safetensors'), 'x');
    symlinkSync(join(other, 'x.safetensors'), join(models, 'x.safetensors'));
    writeFileSync(join(models, 'y.safetensors'), 'y');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('hands the worker the real path, and the host config dir when the request names none', () => {
    expect(loadPaths(join(models, 'y.safetensors'), '', { modelRoots: [models], configDir: '/cfg' })).toEqual(
      {
        path: join(models, 'y.safetensors'),
        configDir: '/cfg',
      },
    );
    symlinkSync(join(models, 'y.safetensors'), join(models, 'y-link.safetensors'));
    expect(
      loadPaths(join(models, 'y-link.safetensors'), join(models, 'configs'), { modelRoots: [models] }),
    ).toEqual({ path: join(models, 'y.safetensors'), configDir: join(models, 'configs') });
  });

  it('refuses a relative path, a link out of the roots, and every load on a host without roots', () => {
    expect(() => loadPaths('y.safetensors', '', { modelRoots: [models] })).toThrow('path: must be absolute');
    expect(() => loadPaths(join(models, 'x.safetensors'), '', { modelRoots: [models] })).toThrow(
      /^path: must be inside a model root of this host/,
    );
    expect(() => loadPaths(join(models, 'y.safetensors'), '', { modelRoots: [] })).toThrow(
      'path: a model root of this host is not configured on this service',
    );
    expect(() => loadPaths(join(models, 'y.safetensors'), other, { modelRoots: [models] })).toThrow(
      'config_dir: must be inside a model root of this host',
    );
  });
});
