import type { WorkerGenerateParams } from '../generation-request';

/** The fields a member of a dynamic batch brings on its own; every other field is shared. */
export const MEMBER_FIELDS = ['prompt', 'negativePrompt', 'seed', 'initImage', 'mask'] as const;

/**
 * The batch key of worker params: two requests with the same key differ only in their member
 * fields (prompts, seed, input images) and run as one worker call. Undefined when the request
 * cannot join a batch (it asks for several images itself).
 */
export function batchKeyOf(params: WorkerGenerateParams): string | undefined {
  if (Number(params['batchCount'] ?? 1) > 1) return undefined;
  const shared: Record<string, unknown> = { ...params };
  for (const field of MEMBER_FIELDS) delete shared[field];
  delete shared['batchCount'];
  return JSON.stringify(shared, Object.keys(shared).sort());
}

/** One worker call for `members` (all of one batch key): the shared fields plus `members`. */
export function batchParams(members: readonly WorkerGenerateParams[]): WorkerGenerateParams {
  if (members.length === 1) return members[0]!;
  const shared: WorkerGenerateParams = { ...members[0]! };
  for (const field of MEMBER_FIELDS) delete shared[field];
  delete shared['batchCount'];
  return {
    ...shared,
    members: members.map((m) =>
      Object.fromEntries(MEMBER_FIELDS.filter((f) => m[f] !== undefined).map((f) => [f, m[f]])),
    ),
  };
}
