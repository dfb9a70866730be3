import type { FieldViolation } from '@dops/errors';
import type { Artifact, StageName } from '@dops/queue';
import { commonV1, googleRpc, processingV1 } from '@dops/proto';
import { enumKey, enumValue } from '@dops/validation';

export type JobStateName = 'QUEUED' | 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'CANCELLED';
export const TERMINAL: ReadonlySet<JobStateName> = new Set(['SUCCEEDED', 'FAILED', 'CANCELLED']);

/** One stage of a job's workflow, with the params its stage job carries. */
export interface StagePlan {
  stage: StageName;
  params: Record<string, unknown>;
}

/** A job as kept in Redis (`<prefix>:proc:job:<id>`, JSON). */
export interface JobRecord {
  id: string;
  state: JobStateName;
  template: string;
  clientId: string;
  sessionId?: string;
  batchId?: string;
  priority: processingV1.Priority;
  stage: string;
  plan: StagePlan[];
  createdAt: number;
  updatedAt: number;
  deadlineAt: number;
  /** The job's time budget, so a retry gets a new deadline. */
  budgetMs: number;
  images: Artifact[];
  /** Every file its stages wrote this run (removed when it ends, but for the published images). */
  outputs?: string[];
  error?: JobErrorRecord;
  runs: number;
  held: boolean;
  /** The queue its first stage went to (`inference` or `inference@<node>`). */
  firstQueue?: string;
  /** Counted in its client's queued-job count (fairness) until it leaves QUEUED. */
  counted: boolean;
  traceparent?: string;
}

/** Why a job failed: the stage's DopsError as it came through the queue. */
export interface JobErrorRecord {
  /** An ErrorCode name without its prefix (`INVALID_ARGUMENT`). */
  code: string;
  message: string;
  retryable: boolean;
  stage: string;
  violations?: FieldViolation[];
}

/** A job event on its stream (`<prefix>:proc:job:<id>:events`). */
export type JobEvent =
  | { kind: 'state' }
  | { kind: 'stage'; stage: string; status: 'started' | 'completed' | 'queued' }
  | { kind: 'progress'; stage: string; step: number; total: number; preview?: Artifact };

/** The proto enum of a state name. */
export function toProtoState(state: JobStateName): processingV1.JobState {
  return processingV1.JobState[state];
}

/** The state name of a proto enum; undefined for UNSPECIFIED. */
export function fromProtoState(state: processingV1.JobState): JobStateName | undefined {
  return enumKey(processingV1.JobState, state) as JobStateName | undefined;
}

/** A stored artifact as on the wire (records written before `safety` existed lack it). */
export function toProtoArtifact(a: Artifact): commonV1.Artifact {
  return commonV1.Artifact.fromPartial(a);
}

/** A stored error as dops.common.v1.JobError. */
export function toProtoError(e: JobErrorRecord): commonV1.JobError {
  return {
    code: enumValue(commonV1.ErrorCode, e.code) ?? commonV1.ErrorCode.INTERNAL,
    message: e.message,
    retryable: e.retryable,
    stage: e.stage,
    fieldViolations: (e.violations ?? []).map((v) => googleRpc.BadRequest_FieldViolation.fromPartial(v)),
  };
}

/** The public view of a record. */
export function toProtoJob(r: JobRecord): processingV1.Job {
  return {
    id: r.id,
    state: toProtoState(r.state),
    template: r.template,
    clientId: r.clientId,
    sessionId: r.sessionId ?? '',
    batchId: r.batchId ?? '',
    priority: r.priority,
    stage: r.stage,
    stages: r.plan.map((p) => p.stage),
    createdAt: new Date(r.createdAt),
    updatedAt: new Date(r.updatedAt),
    deadlineAt: new Date(r.deadlineAt),
    images: r.images.map(toProtoArtifact),
    error: r.error && toProtoError(r.error),
    runs: r.runs,
    held: r.held,
  };
}
