import { DopsError } from '@dops/errors';
import { Violations } from './index';

describe('Violations', () => {
  it('collects every field, prefixed, and fails once with all of them', () => {
    const v = new Violations('params');
    v.add('width', 'must be a multiple of 8');
    v.addTopLevel('device_id', 'is required');
    v.intIn(0, 1, 150, 'steps');
    v.numberIn(0.5, 0, 1, 'strength');
    let thrown: unknown;
    try {
      v.throwIfAny();
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(DopsError);
    expect((thrown as DopsError).code).toBe('INVALID_ARGUMENT');
    expect((thrown as DopsError).violations.map((x) => x.field)).toEqual([
      'params.width',
      'device_id',
      'params.steps',
    ]);
  });

  it('confines paths to the roots (see confine-path.spec.ts): the real path, or a violation', () => {
    const v = new Violations();
    expect(v.confined('a/b.png', ['/srv/in', '/srv/out'], 'image', 'the input root')).toBe('/srv/in/a/b.png');
    expect(v.confined('/srv/out/x.png', ['/srv/in', '/srv/out'], 'image', 'the input root')).toBe(
      '/srv/out/x.png',
    );
    expect(v.empty).toBe(true);
    v.confined('../etc/passwd', ['/srv/in'], 'image', 'the input root');
    v.confined('/etc/passwd', ['/srv/in'], 'mask', 'the input root');
    v.confined('', ['/srv/in'], 'init_image', 'the input root');
    v.confined('x.png', [], 'controlnets[0].image', 'the input root');
    expect(() => v.throwIfAny()).toThrow(
      "image: must not contain '..' segments; mask: must be inside the input root; init_image: is required; controlnets[0].image: the input root is not configured on this service",
    );
  });
});
