export { WorkerSupervisor } from './supervisor';
export type { SupervisorEvents, WorkerHealth, WorkerHeartbeat, WorkerState } from './supervisor';
export type { RequestOptions } from './request-call';
export { resolveSupervisorOptions } from './options';
export type { ResolvedSupervisorOptions, WorkerSupervisorOptions } from './options';
export { DEFAULT_MAX_FRAME_BYTES, LineSplitter, NdjsonDecoder } from './ndjson-decoder';
export { CANCEL_METHOD, PROGRESS_METHOD, WRITING_PHASE, classifyJsonRpc } from './json-rpc';
export type {
  JsonRpcErrorObject,
  JsonRpcFailure,
  JsonRpcMessage,
  JsonRpcNotification,
  JsonRpcRequest,
  JsonRpcResponse,
  JsonRpcSuccess,
  ProgressParams,
  RequestId,
} from './json-rpc';
export { PROTOCOL_VERSION } from './worker-methods';
export type { InitializeResult, PingResult, WorkerBackend, WorkerDevice } from './worker-methods';
export type { WorkerExit } from './worker-process';
export { parseWorkerLogLine } from './worker-log';
export type { WorkerLogLevel, WorkerLogRecord } from './worker-log';
export { silentLogger } from './logger';
export type { LogFn, SupervisorLogger } from './logger';
export { RestartPolicy } from './restart-policy';
export type { RestartDecision, RestartPolicyOptions } from './restart-policy';
export { findRepoRoot, resolvePythonExecutable } from './python-executable';
export type { ResolvePythonOptions } from './python-executable';
