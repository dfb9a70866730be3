/** JSON-RPC 2.0 message shapes of docs/worker-protocol.md and a strict classifier for frames. */

export type RequestId = number | string;

export interface JsonRpcRequest {
  jsonrpc: '2.0';
  id: RequestId;
  method: string;
  params?: unknown;
}

export interface JsonRpcNotification {
  jsonrpc: '2.0';
  method: string;
  params?: unknown;
}

export interface JsonRpcErrorObject {
  code: number;
  message: string;
  data?: unknown;
}

export interface JsonRpcSuccess {
  jsonrpc: '2.0';
  id: RequestId;
  result: unknown;
}

export interface JsonRpcFailure {
  jsonrpc: '2.0';
  /** null when the peer could not read the id of the request it answers (parse error). */
  id: RequestId | null;
  error: JsonRpcErrorObject;
}

export type JsonRpcResponse = JsonRpcSuccess | JsonRpcFailure;

export type JsonRpcMessage =
  | { kind: 'request'; message: JsonRpcRequest }
  | { kind: 'notification'; message: JsonRpcNotification }
  | { kind: 'response'; message: JsonRpcResponse };

/** `$/progress` params sent by the worker for a running request. */
export interface ProgressParams {
  id: RequestId;
  step: number;
  total: number;
  preview?: { path: string; width: number; height: number };
  /**
   * `'writing'`: the request's device work ended and only its file writes remain (sent once, with
   * `step === total`); the worker already runs the next request, and this one replies when they
   * end. Absent on every other frame (and from workers that predate it).
   */
  phase?: typeof WRITING_PHASE;
}

export const WRITING_PHASE = 'writing';

export const PROGRESS_METHOD = '$/progress';
export const CANCEL_METHOD = '$/cancelRequest';
export const METHOD_NOT_FOUND = -32601;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isId(value: unknown): value is RequestId {
  return (typeof value === 'number' && Number.isFinite(value)) || typeof value === 'string';
}

/**
 * Classifies a parsed JSON value as a JSON-RPC 2.0 request, notification or response; returns
 * the reason as a string when it is none of them (never throws). Batches are not part of the
 * protocol and are rejected.
 */
export function classifyJsonRpc(value: unknown): JsonRpcMessage | string {
  if (!isObject(value))
    return `expected a JSON object, got ${Array.isArray(value) ? 'an array' : typeof value}`;
  if (value['jsonrpc'] !== '2.0') return 'jsonrpc must be "2.0"';
  const hasId = 'id' in value;
  if ('method' in value) {
    if (typeof value['method'] !== 'string') return 'method must be a string';
    if ('params' in value && !isObject(value['params']) && !Array.isArray(value['params'])) {
      return 'params must be an object or an array';
    }
    if (!hasId) return { kind: 'notification', message: value as unknown as JsonRpcNotification };
    if (!isId(value['id'])) return 'id must be a number or a string';
    return { kind: 'request', message: value as unknown as JsonRpcRequest };
  }
  if (!hasId) return 'a response needs an id';
  const hasResult = 'result' in value;
  const hasError = 'error' in value;
  if (hasResult === hasError) return 'a response has exactly one of result and error';
  if (hasResult) {
    if (!isId(value['id'])) return 'id must be a number or a string';
    return { kind: 'response', message: value as unknown as JsonRpcSuccess };
  }
  if (value['id'] !== null && !isId(value['id'])) return 'id must be a number, a string or null';
  const error = value['error'];
  if (!isObject(error) || typeof error['code'] !== 'number' || typeof error['message'] !== 'string') {
    return 'error must be {code: number, message: string, data?}';
  }
  return { kind: 'response', message: value as unknown as JsonRpcFailure };
}
