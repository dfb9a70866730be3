import { workerV1 } from '@dops/proto';
import type { LaneBatching } from '@dops/worker-pool';
import type { WorkerGenerateParams } from '../generation-request';
import { batchKeyOf, batchParams } from './batch-key';

/**
 * How `inference.generate` requests join one worker call (dynamic batching): same key = every
 * field equal but the member fields; the call carries them as `members`, and each request gets
 * its member's image.
 */
export function generateBatching(params: WorkerGenerateParams): LaneBatching<workerV1.GenerateResult> {
  return {
    key: batchKeyOf(params),
    combine: (members) => batchParams(members as WorkerGenerateParams[]),
    split: (raw, member, size) => {
      const result = workerV1.GenerateResult.fromJSON(raw);
      return size === 1 ? result : memberResult(result, member);
    },
  };
}

/** One member's share of a batch result. */
function memberResult(result: workerV1.GenerateResult, member: number): workerV1.GenerateResult {
  const images = result.images.filter((i) => i.member === member).map((i) => ({ ...i, index: 0, member: 0 }));
  const seed = images[0]?.seed ?? result.seeds[member] ?? result.seed;
  return { ...result, images, seed, seeds: [seed] };
}
