import { mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DopsError } from '@dops/errors';
import type { Reservations, ReserveAnswer } from '@dops/model-host';
import type { WorkerPool } from '@dops/worker-pool';
import type { InferenceModels } from '../inference-models';
import type { ModelIdentities, ModelIdentity } from './model-identities';
import { NodeLoader } from './node-loader';

/** The parts of InferenceModels a NodeLoader uses, recording what it is asked to do. */
function fakeModels() {
  const held = new Map<string, 'ram' | 'vram'>();
  const log: string[] = [];
  let gate: Promise<void> = Promise.resolve();
  let failNext: Error | undefined;
  const models = {
    onVram: ({ modelId }: { modelId?: string }) =>
      [...held]
        .filter(([k, t]) => t === 'vram' && k.endsWith(`/${modelId}`))
        .map(([k]) => ({
          deviceId: k.split('/')[0]!,
          modelId: modelId!,
        })),
    heldOn: (modelId: string, deviceId: string) => {
      const tier = held.get(`${deviceId}/${modelId}`);
      return tier && { tier, path: '', sha256: undefined };
    },
    residentOnVram: () => [],
    load: async (modelId: string, _path: string, deviceId: string, tier: 'ram' | 'vram') => {
      log.push(`load ${modelId} ${deviceId}`);
      await gate;
      if (failNext) {
        const err = failNext;
        failNext = undefined;
        throw err;
      }
      held.set(`${deviceId}/${modelId}`, tier);
    },
    unload: async (modelId: string, deviceId: string, tier: 'ram' | 'vram') => {
      log.push(`unload ${modelId} ${deviceId} ${tier}`);
      if (tier === 'vram') held.set(`${deviceId}/${modelId}`, 'ram');
      else held.delete(`${deviceId}/${modelId}`);
      return true;
    },
  };
  return {
    models: models as unknown as InferenceModels,
    held,
    log,
    hold: () => {
      let open!: () => void;
      gate = new Promise((resolve) => (open = resolve));
      return open;
    },
    failNextLoad: (err: Error) => (failNext = err),
  };
}

function fakePool(...devices: { id: string; state?: string; active?: number }[]): WorkerPool {
  return {
    list: () =>
      devices.map((d) => ({
        device: { id: d.id },
        supervisor: { state: d.state ?? 'ready', health: () => ({ activeRequests: d.active ?? 0 }) },
      })),
  } as unknown as WorkerPool;
}

class Identities implements ModelIdentities {
  readonly asked: string[] = [];
  constructor(private readonly byId: Record<string, ModelIdentity>) {}
  async identify(id: string): Promise<ModelIdentity> {
    this.asked.push(id);
    const found = this.byId[id];
    if (!found) throw DopsError.notFound('model', id);
    return found;
  }
  close(): void {
    // nothing held
  }
}

/** A ledger with room for `room` models per device that always plans the oldest grant away. */
class Ledger implements Reservations {
  readonly log: string[] = [];
  private readonly granted: string[] = [];
  constructor(
    private readonly room: number,
    private readonly planAnyway = false,
  ) {}
  async reserve(req: { modelId: string }): Promise<ReserveAnswer> {
    const others = this.granted.filter((m) => m !== req.modelId);
    if (!this.planAnyway && others.length < this.room) {
      this.granted.splice(0, this.granted.length, ...others, req.modelId);
      this.log.push(`grant ${req.modelId}`);
      return { granted: { id: req.modelId } };
    }
    this.log.push(`plan ${others[0] ?? ''}`);
    return { evictionPlan: { modelIds: others.slice(0, 1) } };
  }
  async release(req: { modelId: string }): Promise<void> {
    const at = this.granted.indexOf(req.modelId);
    if (at >= 0) this.granted.splice(at, 1);
    this.log.push(`release ${req.modelId}`);
  }
  async touch(req: { modelId: string }): Promise<void> {
    this.log.push(`touch ${req.modelId}`);
  }
  close(): void {
    // nothing held
  }
}

describe('NodeLoader', () => {
  let root: string;
  const identity = (id: string, over: Partial<ModelIdentity> = {}): ModelIdentity => ({
    id,
    path: join(root, `${id}.safetensors`),
    sizeBytes: 10,
    status: 'hashing',
    reason: '',
    ...over,
  });

  beforeEach(() => {
    root = realpathSync(mkdtempSync(join(tmpdir(), 'dops-node-loader-')));
    for (const id of ['a', 'b', 'c']) writeFileSync(join(root, `${id}.safetensors`), id);
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('loads a model once for concurrent jobs, on the ready, least busy device', async () => {
    const m = fakeModels();
    const identities = new Identities({ a: identity('a') });
    const loader = new NodeLoader(
      m.models,
      fakePool({ id: 'cpu:0', active: 2 }, { id: 'cpu:1' }, { id: 'cpu:2', state: 'starting' }),
      { identities, modelRoots: [root], hashPollMs: 0 },
    );
    const open = m.hold();
    const both = Promise.all([loader.ensureOnVram('a'), loader.ensureOnVram('a')]);
    open();
    expect(await both).toEqual(['cpu:1', 'cpu:1']);
    expect(m.log).toEqual(['load a cpu:1']);
    expect(identities.asked).toEqual(['a']);
    // Held now: no question asked, nothing loaded.
    expect(await loader.ensureOnVram('a')).toBe('cpu:1');
    expect(identities.asked).toEqual(['a']);
  });

  it('refuses an invalid or refused model, or a file outside its roots, naming params.model_id', async () => {
    const m = fakeModels();
    const loader = new NodeLoader(m.models, fakePool({ id: 'cpu:0' }), {
      identities: new Identities({
        a: identity('a', { status: 'invalid', reason: 'truncated header' }),
        b: identity('b', { status: 'refused', reason: 'pickle' }),
        c: identity('c', { path: '/etc/passwd' }),
      }),
      modelRoots: [root],
      hashPollMs: 0,
    });
    for (const [id, text] of [
      ['a', 'model is invalid: truncated header'],
      ['b', 'model is refused: pickle'],
      ['c', 'not loadable here'],
    ] as const) {
      await expect(loader.ensureOnVram(id)).rejects.toMatchObject({
        code: 'FAILED_PRECONDITION',
        violations: [{ field: 'params.model_id', description: expect.stringContaining(text) }],
      });
    }
    await expect(loader.ensureOnVram('zzz')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(m.log).toEqual([]);
  });

  it('carries out an eviction plan (VRAM → RAM, reservation released), and frees its grant when the load fails', async () => {
    const m = fakeModels();
    const ledger = new Ledger(1);
    const loader = new NodeLoader(m.models, fakePool({ id: 'cpu:0' }), {
      identities: new Identities({ a: identity('a'), b: identity('b') }),
      reservations: ledger,
      modelRoots: [root],
      hashPollMs: 0,
    });
    await loader.ensureOnVram('a');
    await loader.ensureOnVram('b');
    expect(m.log).toEqual(['load a cpu:0', 'unload a cpu:0 vram', 'load b cpu:0']);
    expect(ledger.log).toEqual(['grant a', 'plan a', 'release a', 'grant b']);
    expect(m.held.get('cpu:0/a')).toBe('ram');

    m.failNextLoad(new DopsError('OUT_OF_MEMORY', 'no room after all'));
    await m.models.unload('b', 'cpu:0', 'vram');
    await expect(loader.ensureOnVram('a')).rejects.toMatchObject({ code: 'OUT_OF_MEMORY' });
    expect(ledger.log.slice(-4)).toEqual(['plan b', 'release b', 'grant a', 'release a']);
    loader.close();
  });

  it('answers RESOURCE_EXHAUSTED after the last eviction round, and CANCELLED to a caller that gives up', async () => {
    const m = fakeModels();
    const loader = new NodeLoader(m.models, fakePool({ id: 'cpu:0' }), {
      identities: new Identities({ a: identity('a'), b: identity('b') }),
      reservations: new Ledger(1, true),
      modelRoots: [root],
      maxEvictionRounds: 2,
      hashPollMs: 0,
    });
    await expect(loader.ensureOnVram('a')).rejects.toMatchObject({
      code: 'RESOURCE_EXHAUSTED',
      retryable: true,
    });

    const open = m.hold();
    const loader2 = new NodeLoader(m.models, fakePool({ id: 'cpu:0' }), {
      identities: new Identities({ b: identity('b') }),
      modelRoots: [root],
      hashPollMs: 0,
    });
    const abort = new AbortController();
    const gaveUp = loader2.ensureOnVram('b', abort.signal);
    const stayed = loader2.ensureOnVram('b');
    abort.abort();
    await expect(gaveUp).rejects.toMatchObject({ code: 'CANCELLED' });
    open();
    // The shared load went on for the caller that stayed.
    expect(await stayed).toBe('cpu:0');
  });

  it('counts a generation as a use of the reservation, at most once per touchEveryMs per model', async () => {
    const m = fakeModels();
    const ledger = new Ledger(2);
    const loader = new NodeLoader(m.models, fakePool({ id: 'cpu:0' }), {
      identities: new Identities({}),
      reservations: ledger,
      modelRoots: [root],
      touchEveryMs: 60_000,
    });
    loader.used('a', 'cpu:0');
    loader.used('a', 'cpu:0');
    loader.used('b', 'cpu:0');
    await new Promise((resolve) => setImmediate(resolve));
    expect(ledger.log).toEqual(['touch a', 'touch b']);
  });
});
