import type { commonV1 } from '@dops/proto';
import type { StageName } from './names';

/** A file a stage wrote under the artifact root (never inline bytes): dops.common.v1.Artifact (`safety` unset = no check ran). */
export type Artifact = Omit<commonV1.Artifact, 'safety'> & { safety?: commonV1.SafetyAction };

/** BullMQ job data of every stage job (docs/queue-contract.md). */
export interface StageJobData<P = Record<string, unknown>> {
  /** The processing job's id. */
  jobId: string;
  stage: StageName;
  /** The stage's parameters, camelCase. `generate`: inference GenerationParams JSON incl. `modelId`. */
  params: P;
  /** Absolute epoch ms; past it at pick-up the stage fails DEADLINE_EXCEEDED. */
  deadlineAt: number;
  traceparent?: string;
  clientId: string;
  sessionId?: string;
  batchId?: string;
}

/** Return value of every stage. */
export interface StageResult {
  images: Artifact[];
  /** Epoch ms the stage ended (set by StageWorker): the next stage's queue wait starts here. */
  finishedAt?: number;
  [extra: string]: unknown;
}

/** `job.progress` of a stage job. */
export interface StageProgress {
  stage: StageName;
  step: number;
  total: number;
  preview?: Artifact;
}

/** True when `value` looks like StageProgress (BullMQ progress may be a number). */
export function isStageProgress(value: unknown): value is StageProgress {
  const v = value as Partial<StageProgress> | null;
  return typeof v === 'object' && v !== null && typeof v.step === 'number' && typeof v.total === 'number';
}
