import { DopsError } from '@dops/errors';
import type { ProgressParams, RequestOptions, WorkerSupervisor } from '@dops/worker-supervisor';
import { DeviceLane, type LaneBatching } from './device-lane';

/** A supervisor double that records each request and lets the test answer it (and send its progress). */
function recorder() {
  const calls: {
    method: string;
    params: Record<string, unknown>;
    signal?: AbortSignal;
    progress: (p: Omit<ProgressParams, 'id'>) => void;
    answer: (result: unknown) => void;
    fail: (err: unknown) => void;
  }[] = [];
  const supervisor = {
    request: (method: string, params: Record<string, unknown>, options: RequestOptions) =>
      new Promise((answer, fail) =>
        calls.push({
          method,
          params,
          signal: options.signal,
          progress: (p) => options.onProgress?.({ id: calls.length, ...p }),
          answer,
          fail,
        }),
      ),
  } as unknown as WorkerSupervisor;
  return { calls, supervisor };
}

const req = (prompt: string, over: Record<string, unknown> = {}) => ({
  model: 'm',
  mode: 'txt2img',
  prompt,
  seed: prompt.length,
  steps: 2,
  outputDir: 'd',
  ...over,
});
const image = (member: number, seed: number) => ({
  path: `/a/${member}.png`,
  sha256: 'x',
  width: 8,
  height: 8,
  format: 'png',
  seed,
  index: member,
  member,
});
const tick = () => new Promise((r) => setTimeout(r, 5));

interface Answer {
  images: ReturnType<typeof image>[];
  seed: number;
  seeds: number[];
}
/** A batching as inference's: the same request but prompt and seed; each member gets its image. */
const batching = (params: Record<string, unknown>): LaneBatching<Answer> => {
  const { prompt: _p, seed: _s, ...shared } = params;
  return {
    key: JSON.stringify(shared),
    combine: (members) => ({
      ...shared,
      members: members.map((m) => ({ prompt: m['prompt'], seed: m['seed'] })),
    }),
    split: (raw, member, size) => {
      const answer = raw as Answer;
      if (size === 1) return answer;
      const images = answer.images.filter((i) => i.member === member);
      return { images, seed: images[0]!.seed, seeds: [images[0]!.seed] };
    },
  };
};
const generate = (lane: DeviceLane, params: Record<string, unknown>, call = {}) =>
  lane.request<Answer>('inference.generate', params, call, batching(params));

describe('DeviceLane', () => {
  it('joins compatible waiting requests into one worker call and hands each member its own image', async () => {
    const { calls, supervisor } = recorder();
    const lane = new DeviceLane(() => supervisor, { maxBatch: 4, batchWaitMs: 20, maxRequestMs: 1_000 });
    const results = ['a', 'bb', 'ccc', 'dddd'].map((p) => generate(lane, req(p)));
    const odd = generate(lane, req('e', { steps: 3 }));
    await new Promise((r) => setTimeout(r, 40));
    expect(calls).toHaveLength(1);
    expect(calls[0]!.params['members']).toEqual([
      { prompt: 'a', seed: 1 },
      { prompt: 'bb', seed: 2 },
      { prompt: 'ccc', seed: 3 },
      { prompt: 'dddd', seed: 4 },
    ]);
    expect(calls[0]!.params).not.toHaveProperty('prompt');
    calls[0]!.answer({ images: [0, 1, 2, 3].map((m) => image(m, m + 1)), seed: 1, seeds: [1, 2, 3, 4] });
    const got = await Promise.all(results);
    expect(got.map((r) => [r.seed, r.images.map((i) => i.path)])).toEqual([
      [1, ['/a/0.png']],
      [2, ['/a/1.png']],
      [3, ['/a/2.png']],
      [4, ['/a/3.png']],
    ]);
    // The incompatible one runs on its own, after (its lane waited batchWaitMs for company).
    await new Promise((r) => setTimeout(r, 40));
    expect(calls).toHaveLength(2);
    expect(calls[1]!.params).toMatchObject({ prompt: 'e', steps: 3 });
    expect(calls[1]!.params).not.toHaveProperty('members');
    calls[1]!.answer({ images: [image(0, 1)], seed: 1, seeds: [1] });
    await odd;
  });

  it('drops a request cancelled while it waits: the worker never sees it', async () => {
    const { calls, supervisor } = recorder();
    const lane = new DeviceLane(() => supervisor, { maxBatch: 1, batchWaitMs: 0, maxRequestMs: 1_000 });
    const first = generate(lane, req('a'));
    const cancel = new AbortController();
    const second = generate(lane, req('b'), { signal: cancel.signal });
    await tick();
    cancel.abort(new Error('cancelled by client'));
    await expect(second).rejects.toThrow('cancelled by client');
    calls[0]!.answer({ images: [image(0, 1)], seed: 1, seeds: [1] });
    await first;
    await tick();
    expect(calls.map((c) => c.params['prompt'])).toEqual(['a']);
  });

  it('a cancelled member of a running batch ends at once; the others go on; the call stops only when none is left', async () => {
    const { calls, supervisor } = recorder();
    const lane = new DeviceLane(() => supervisor, { maxBatch: 3, batchWaitMs: 10, maxRequestMs: 1_000 });
    const cancels = [new AbortController(), new AbortController(), new AbortController()];
    const results = ['a', 'bb', 'ccc'].map((p, i) => generate(lane, req(p), { signal: cancels[i]!.signal }));
    await new Promise((r) => setTimeout(r, 30));
    expect(calls).toHaveLength(1);
    cancels[1]!.abort(new Error('member cancelled'));
    await expect(results[1]).rejects.toThrow('member cancelled');
    expect(calls[0]!.signal!.aborted).toBe(false);
    calls[0]!.answer({ images: [0, 1, 2].map((m) => image(m, m + 1)), seed: 1, seeds: [1, 2, 3] });
    expect((await results[0]!).images[0]!.path).toBe('/a/0.png');
    expect((await results[2]!).images[0]!.path).toBe('/a/2.png');

    const again = [new AbortController(), new AbortController()];
    const both = ['x', 'yy'].map((p, i) => generate(lane, req(p), { signal: again[i]!.signal }));
    await new Promise((r) => setTimeout(r, 30));
    again[0]!.abort(new Error('gone'));
    again[1]!.abort(new Error('gone'));
    await Promise.allSettled(both);
    expect(calls[1]!.signal!.aborted).toBe(true);
    calls[1]!.fail(new Error('cancelled'));
  });

  it('runs exclusive work (a model unload) only between generations, and refuses after its wait bound', async () => {
    const { calls, supervisor } = recorder();
    const lane = new DeviceLane(() => supervisor, { maxBatch: 1, batchWaitMs: 0, maxRequestMs: 1_000 });
    const running = generate(lane, req('a'));
    await tick();
    const order: string[] = [];
    const refused = lane.exclusive(async () => order.push('early unload'), {
      waitMs: 30,
      what: 'unloading m',
    });
    await expect(refused).rejects.toMatchObject({ code: 'FAILED_PRECONDITION' });
    const unload = lane.exclusive(async () => order.push('unload'));
    await tick();
    expect(order).toEqual([]);
    calls[0]!.answer({ images: [image(0, 1)], seed: 1, seeds: [1] });
    await running;
    await unload;
    expect(order).toEqual(['unload']);
  });

  it('holds generations while the models of a restarted worker load again; that load goes first', async () => {
    const { calls, supervisor } = recorder();
    let reloadDone!: () => void;
    let reloading: Promise<void> | undefined = new Promise<void>((resolve) => (reloadDone = resolve));
    const lane = new DeviceLane(() => supervisor, {
      maxBatch: 1,
      batchWaitMs: 0,
      maxRequestMs: 1_000,
      ready: () => reloading,
    });
    const order: string[] = [];
    const job = generate(lane, req('a')).then(() => order.push('generate'));
    await tick();
    expect(calls).toHaveLength(0);
    const reload = lane.exclusive(
      async () => {
        order.push('reload');
        reloading = undefined;
        reloadDone();
      },
      { urgent: true },
    );
    await reload;
    await tick();
    expect(calls).toHaveLength(1);
    calls[0]!.answer({ images: [image(0, 1)], seed: 1, seeds: [1] });
    await job;
    expect(order).toEqual(['reload', 'generate']);
  });

  describe('a call that reports its writing phase releases the lane', () => {
    const writing = { step: 2, total: 2, phase: 'writing' as const };
    const answer = (seed: number) => ({ images: [image(0, seed)], seed, seeds: [seed] });

    it('sends the next batch before the first reply, at most two outstanding; each resolves with its own answer', async () => {
      const { calls, supervisor } = recorder();
      const lane = new DeviceLane(() => supervisor, { maxBatch: 1, batchWaitMs: 0, maxRequestMs: 1_000 });
      const seen: ProgressParams[] = [];
      const replied: string[] = [];
      const [a, b, c] = ['a', 'bb', 'ccc'].map((p) =>
        generate(lane, req(p), { onProgress: (q: ProgressParams) => seen.push(q) }).then((r) => {
          replied.push(p);
          return r;
        }),
      );
      await tick();
      calls[0]!.progress({ step: 2, total: 2 });
      await tick();
      // In its device work: the lane holds the next one back.
      expect(calls).toHaveLength(1);
      calls[0]!.progress(writing);
      await tick();
      expect(calls.map((c) => c.params['prompt'])).toEqual(['a', 'bb']);
      expect(replied).toEqual([]);
      // The writing frame is the lane's signal, not the callers' progress.
      expect(seen.map((q) => [q.step, q.total, q.phase])).toEqual([[2, 2, undefined]]);
      // One writing, one computing: the third waits for the oldest reply even once the second writes.
      calls[1]!.progress(writing);
      await tick();
      expect(calls).toHaveLength(2);
      calls[0]!.answer(answer(1));
      await tick();
      expect(calls.map((c) => c.params['prompt'])).toEqual(['a', 'bb', 'ccc']);
      calls[2]!.answer(answer(3));
      calls[1]!.answer(answer(2));
      expect([(await a!).seed, (await b!).seed, (await c!).seed]).toEqual([1, 2, 3]);
      expect(replied).toEqual(['a', 'ccc', 'bb']);
    });

    it('exclusive work waits for every outstanding reply; requests behind it wait for it', async () => {
      const { calls, supervisor } = recorder();
      const lane = new DeviceLane(() => supervisor, { maxBatch: 1, batchWaitMs: 0, maxRequestMs: 1_000 });
      const order: string[] = [];
      const first = generate(lane, req('a')).then(() => order.push('a replied'));
      await tick();
      calls[0]!.progress(writing);
      const second = generate(lane, req('bb')).then(() => order.push('bb replied'));
      await tick();
      expect(calls).toHaveLength(2);
      const unload = lane.exclusive(async () => order.push('unload'));
      const after = generate(lane, req('ccc')).then(() => order.push('ccc replied'));
      calls[1]!.progress(writing);
      await tick();
      expect(order).toEqual([]);
      calls[1]!.answer(answer(2));
      await tick();
      expect(order).toEqual(['bb replied']);
      calls[0]!.answer(answer(1));
      await unload;
      await tick();
      expect(order).toEqual(['bb replied', 'a replied', 'unload']);
      expect(calls).toHaveLength(3);
      calls[2]!.answer(answer(3));
      await Promise.all([first, second, after]);
      expect(order).toEqual(['bb replied', 'a replied', 'unload', 'ccc replied']);
    });

    it('a worker lost with both calls outstanding rejects both, and the lane goes on', async () => {
      const { calls, supervisor } = recorder();
      const lane = new DeviceLane(() => supervisor, { maxBatch: 1, batchWaitMs: 0, maxRequestMs: 1_000 });
      const first = generate(lane, req('a'));
      await tick();
      calls[0]!.progress(writing);
      const second = generate(lane, req('bb'));
      await tick();
      expect(calls).toHaveLength(2);
      const lost = DopsError.unavailable('worker exited (signal SIGKILL)');
      calls[1]!.fail(lost);
      calls[0]!.fail(lost);
      await expect(first).rejects.toBe(lost);
      await expect(second).rejects.toBe(lost);
      const next = generate(lane, req('ccc'));
      await tick();
      calls[2]!.answer(answer(3));
      await expect(next).resolves.toMatchObject({ seed: 3 });
    });
  });
});
