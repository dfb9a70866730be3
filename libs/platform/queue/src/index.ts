// @dops/queue — the one place the BullMQ contract (docs/queue-contract.md) lives.
//
// Configuration:   queueConfig (zod, extend a service config with it), redisUrlOf(config.queue) — the
//                  URL every connection gets (password file, TLS files folded in), DEFAULT_PREFIX
// Connection:      createRedis(url) — ioredis with maxRetriesPerRequest: null; connectionOptions(url)
//                  — options for BullMQ's `connection` (BullMQ then owns and closes it); both read
//                  the URL's password_file / tls_*_file parameters; redactRedisUrl for logs;
//                  REDIS_ACL_USER / REDIS_ACL_RULES — the ACL user every Redis of dops has
// Names:           QUEUE_NAMES, STAGE_QUEUE (stage → queue), nodeQueueName('inference', id) →
//                  'inference@id', stageJobId(jobId, stage) → '<jobId>.<stage>', parseStageJobId,
//                  cancelKey / cancelChannel / nodeKey / nodesKey (all under the prefix)
// Job data:        StageJobData<P>, StageResult {images: Artifact[]}, StageProgress, Artifact
// Errors:          encodeStageError(err) → Error with JSON message (UnrecoverableError when not
//                  retryable); decodeStageError(failedReason) → DopsError
// Retries:         stageBackoff(delayMs) for job opts: BullMQ's exponential backoff, jitter 0.5
// Internals:       jobsAhead(redis, prefix, queue, jobId) — the only read of BullMQ's own keys
//                  (bullmq-internals.ts, pinned to BULLMQ_INTERNALS_VERSION by its test)
// Cancel:          publishCancel / clearCancel / isCancelled (key + pub/sub); CancelListener maps
//                  jobId → AbortController in a stage process
// Nodes:           NodeAnnouncer (TTL heartbeat hash), listNodes
// Stage workers:   StageWorker({queues, redisUrl, prefix, concurrency, lockDurationMs, ...,
//                  process: async (ctx) => ({images})}) — cancel + deadline at pick-up, abort
//                  signal while running, ctx.reportProgress, ctx.inputs() (children's results),
//                  error encoding; retries by BullMQ's own backoff.
export { DEFAULT_PREFIX, DEFAULT_REDIS_URL, queueConfig, redisUrlOf } from './queue-config';
export type { QueueConfig, RedisUrlSettings } from './queue-config';
export {
  REDIS_ACL_RULES,
  REDIS_ACL_USER,
  REDIS_URL_FILE_PARAMS,
  connectionOptions,
  createRedis,
  readPasswordFile,
  redactRedisUrl,
  redisOptions,
} from './connection';
export type { Redis, RedisTarget } from './connection';
export {
  QUEUE_NAMES,
  STAGE_NAMES,
  STAGE_QUEUE,
  cancelChannel,
  cancelKey,
  isStageName,
  nodeKey,
  nodeQueueName,
  nodesKey,
  parseStageJobId,
  stageJobId,
} from './names';
export type { QueueName, StageName } from './names';
export { isStageProgress } from './stage-data';
export type { Artifact, StageJobData, StageProgress, StageResult } from './stage-data';
export { decodeStageError, encodeStageError } from './stage-error';
export type { EncodedStageError } from './stage-error';
export { stageBackoff } from './backoff';
export { BULLMQ_INTERNALS_VERSION, jobsAhead } from './bullmq-internals';
export { CancelListener, cancelledError, clearCancel, isCancelled, publishCancel } from './cancel';
export type { CancelRegistration } from './cancel';
export { NodeAnnouncer, listNodes } from './node-announcer';
export type { AnnouncedDevice, NodeAnnouncement, NodeAnnouncerOptions } from './node-announcer';
export { StageWorker } from './stage-worker';
// Observability:   queueTelemetry() — BullMQ's own OpenTelemetry integration for every Queue,
//                  Worker and FlowProducer; QueueDepths — job counts per queue for metrics;
//                  ErrorThrottle — connection errors as one JSON line, at most one per interval
export { queueTelemetry } from './queue-telemetry';
export { QueueDepths } from './queue-depth';
export { Transactions } from './transactions';
export { ErrorThrottle, errorFields } from './error-throttle';
export type { WarnLogger } from './error-throttle';
export type { StageContext, StageProcessor, StageWorkerOptions } from './stage-worker';
// Tests:           startTestRedis({aof?, tls?}) — a real redis-server on a free port, restartable,
//                  loopback only, ACL user dops with a random password (in its url), owner-only files.
export { redisAclFile, startTestRedis } from './test-redis';
export type { TestRedis, TestRedisTls } from './test-redis';
