/** The stage queues of the contract. */
export const QUEUE_NAMES = ['inference', 'postprocessing'] as const;
export type QueueName = (typeof QUEUE_NAMES)[number];

/** Stages and the queue each runs on. */
export const STAGE_QUEUE = {
  generate: 'inference',
  upscale: 'postprocessing',
  face_restore: 'postprocessing',
  safety: 'postprocessing',
  convert: 'postprocessing',
} as const satisfies Record<string, QueueName>;
export type StageName = keyof typeof STAGE_QUEUE;
export const STAGE_NAMES = Object.keys(STAGE_QUEUE) as StageName[];

/** True when `value` names a stage. */
export function isStageName(value: unknown): value is StageName {
  return typeof value === 'string' && value in STAGE_QUEUE;
}

/** `inference@<nodeId>`: the queue only that node consumes (model affinity). */
export function nodeQueueName(queue: QueueName, nodeId: string): string {
  return `${queue}@${nodeId}`;
}

/**
 * The BullMQ job id of a processing job's stage: `<jobId>.<stage>` (adding it twice adds it
 * once). Not `:` — BullMQ 5 rejects custom ids containing it.
 */
export function stageJobId(jobId: string, stage: StageName): string {
  return `${jobId}.${stage}`;
}

/** `{jobId, stage}` of a BullMQ stage job id; undefined for an id of another shape. */
export function parseStageJobId(id: string | undefined): { jobId: string; stage: StageName } | undefined {
  if (!id) return undefined;
  const at = id.lastIndexOf('.');
  const stage = id.slice(at + 1);
  if (at <= 0 || !isStageName(stage)) return undefined;
  return { jobId: id.slice(0, at), stage };
}

/** `<prefix>:cancel:<jobId>`: set when a job is cancelled (kept a day). */
export function cancelKey(prefix: string, jobId: string): string {
  return `${prefix}:cancel:${jobId}`;
}

/** `<prefix>:cancel`: the channel that carries cancelled job ids. */
export function cancelChannel(prefix: string): string {
  return `${prefix}:cancel`;
}

/** `<prefix>:node:<nodeId>`: a node's announcement hash. */
export function nodeKey(prefix: string, nodeId: string): string {
  return `${prefix}:node:${nodeId}`;
}

/** `<prefix>:nodes`: the set of announced node ids. */
export function nodesKey(prefix: string): string {
  return `${prefix}:nodes`;
}
