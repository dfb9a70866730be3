import { toRequestFields } from './stage-fields';

describe('toRequestFields', () => {
  it.each([
    ['generate', 'params.loras[1].weight', 'spec.params.loras[1].weight'],
    ['upscale', 'params.modelPath', 'spec.upscale.model_path'],
    ['upscale', 'scale', 'spec.upscale.scale'],
    ['face_restore', 'params.faceSize', 'spec.face_restore.face_size'],
    ['convert', 'params.quality', 'spec.convert.quality'],
    ['safety', 'params.policy', 'spec.safety'],
    ['upscale', 'params.images', 'spec.upscale'],
  ])('%s %s → %s', (stage, field, expected) => {
    expect(toRequestFields(stage, [{ field, description: 'x' }])).toEqual([
      { field: expected, description: 'x' },
    ]);
  });
});
