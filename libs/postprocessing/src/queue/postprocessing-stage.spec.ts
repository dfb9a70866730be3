import { DopsError } from '@dops/errors';
import type { StageContext } from '@dops/queue';
import type { Postprocessor, PostprocessOutcome } from '../postprocessor';
import { postprocessingStage, type PostprocessStageParams } from './postprocessing-stage';

const artifact = (path: string) => ({ path, sha256: 'ab', width: 8, height: 8, format: 'png' });

function context(stage: string, params: PostprocessStageParams, childImages: string[]) {
  const progress: object[] = [];
  const ctx = {
    data: { jobId: 'j1', stage, params, deadlineAt: Date.now() + 60_000, clientId: 'c' },
    signal: new AbortController().signal,
    deadline: new Date(Date.now() + 60_000),
    attempt: 1,
    reportProgress: (p: object) => progress.push(p),
    inputs: async () => (childImages.length ? [{ images: childImages.map(artifact) }] : []),
    job: {},
  } as unknown as StageContext<PostprocessStageParams>;
  return { ctx, progress };
}

function fake(outcome: (image: string) => Partial<PostprocessOutcome>): Postprocessor {
  const run = async (
    req: { image: string },
    options: { onProgress?: (p: { id: number; step: number; total: number }) => void },
  ) => {
    options.onProgress?.({ id: 1, step: 1, total: 1 });
    return { operation: 'x', deviceId: 'cpu:0', image: artifact(`${req.image}.out`), ...outcome(req.image) };
  };
  return { upscale: run, restoreFaces: run, checkSafety: run, convert: run } as unknown as Postprocessor;
}

describe('postprocessingStage', () => {
  it('runs on every image of the previous stage and reports progress across them', async () => {
    const { ctx, progress } = context('convert', { format: 'webp' }, ['/a.png', '/b.png']);
    const result = await postprocessingStage(fake(() => ({})))(ctx);
    expect(result.images.map((i) => i.path)).toEqual(['/a.png.out', '/b.png.out']);
    expect(progress).toEqual([
      { step: 1, total: 2 },
      { step: 2, total: 2 },
    ]);
  });

  it('fails FAILED_PRECONDITION, not retryable, when the safety check blocks an image', async () => {
    const { ctx } = context('safety', { policy: 'block' }, ['/a.png']);
    const stage = postprocessingStage(fake(() => ({ blocked: true, image: null, nsfw: true })));
    await expect(stage(ctx)).rejects.toMatchObject({ code: 'FAILED_PRECONDITION', retryable: false });
  });

  it('refuses an unknown policy and a scale the model does not have, naming the field', async () => {
    const policy = context('safety', { policy: 'shrug' }, ['/a.png']).ctx;
    await expect(postprocessingStage(fake(() => ({})))(policy)).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      violations: [expect.objectContaining({ field: 'params.policy' })],
    });
    const scale = context('upscale', { modelPath: 'm.safetensors', scale: 4 }, ['/a.png']).ctx;
    const error: DopsError = await postprocessingStage(fake(() => ({ scale: 2 })))(scale).catch((e) => e);
    expect(error.violations).toEqual([expect.objectContaining({ field: 'params.scale' })]);
  });

  it('uses params.images when there is no previous stage; none at all is INVALID_ARGUMENT', async () => {
    const { ctx } = context('convert', { format: 'png', images: ['/in.png'] }, []);
    expect((await postprocessingStage(fake(() => ({})))(ctx)).images).toHaveLength(1);
    const empty = context('convert', { format: 'png' }, []).ctx;
    await expect(postprocessingStage(fake(() => ({})))(empty)).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
  });
});
