"""JSON-RPC 2.0 messages: parsing with validation, and builders for what the worker sends."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Union

from dops_worker.protocol.errors import ErrorCode, WorkerError

PROTOCOL_VERSION = 1
JSONRPC_VERSION = "2.0"

RequestId = Union[int, str]


class JsonRpcCode(IntEnum):
    """JSON-RPC numeric codes; ``data.code`` carries the dops string code."""

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    APPLICATION_ERROR = -32000


class InvalidMessage(Exception):
    """A frame that is not a valid JSON-RPC message.

    ``rpc_code`` is PARSE_ERROR or INVALID_REQUEST; ``request_id`` is the id if one could be read
    (the reply must carry it), else None.
    """

    def __init__(self, rpc_code: JsonRpcCode, reason: str, request_id: RequestId | None = None):
        super().__init__(reason)
        self.rpc_code = rpc_code
        self.reason = reason
        self.request_id = request_id


@dataclass(frozen=True)
class Request:
    id: RequestId
    method: str
    params: Any = field(default_factory=dict)


@dataclass(frozen=True)
class Notification:
    method: str
    params: Any = field(default_factory=dict)


@dataclass(frozen=True)
class Response:
    id: RequestId | None
    result: Any = None
    error: dict[str, Any] | None = None

    @property
    def is_error(self) -> bool:
        return self.error is not None


Message = Union[Request, Notification, Response]


def _is_valid_id(value: Any) -> bool:
    # bool is an int subclass in Python but not a JSON-RPC id.
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def parse_message(payload: bytes | str) -> Message:
    """Parse one frame. Raises InvalidMessage (PARSE_ERROR for bad JSON/UTF-8, else INVALID_REQUEST)."""
    try:
        value = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidMessage(JsonRpcCode.PARSE_ERROR, f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidMessage(JsonRpcCode.INVALID_REQUEST, "a message must be a JSON object (no batches)")
    raw_id = value.get("id")
    request_id = raw_id if _is_valid_id(raw_id) else None
    if value.get("jsonrpc") != JSONRPC_VERSION:
        raise InvalidMessage(JsonRpcCode.INVALID_REQUEST, 'jsonrpc must be "2.0"', request_id)
    if "id" in value and raw_id is not None and not _is_valid_id(raw_id):
        raise InvalidMessage(JsonRpcCode.INVALID_REQUEST, "id must be a string or an integer")
    if "method" in value:
        method = value["method"]
        if not isinstance(method, str) or not method:
            raise InvalidMessage(JsonRpcCode.INVALID_REQUEST, "method must be a non-empty string", request_id)
        params = value.get("params", {})
        if not isinstance(params, (dict, list)):
            raise InvalidMessage(JsonRpcCode.INVALID_REQUEST, "params must be an object or an array", request_id)
        if request_id is None:
            return Notification(method, params)
        return Request(request_id, method, params)
    if "result" in value or "error" in value:
        if ("result" in value) == ("error" in value):
            raise InvalidMessage(JsonRpcCode.INVALID_REQUEST, "a response has exactly one of result, error", request_id)
        error = value.get("error")
        if error is not None and not (
            isinstance(error, dict) and isinstance(error.get("code"), int) and isinstance(error.get("message"), str)
        ):
            raise InvalidMessage(JsonRpcCode.INVALID_REQUEST, "error must be {code: int, message: string}", request_id)
        return Response(raw_id if _is_valid_id(raw_id) else None, value.get("result"), error)
    raise InvalidMessage(JsonRpcCode.INVALID_REQUEST, "neither a request, a notification nor a response", request_id)


def result_response(request_id: RequestId, result: Any) -> dict[str, Any]:
    return {"jsonrpc": JSONRPC_VERSION, "id": request_id, "result": result}


def error_response(
    request_id: RequestId | None,
    error: WorkerError,
    rpc_code: JsonRpcCode | None = None,
) -> dict[str, Any]:
    """A JSON-RPC error reply. ``rpc_code`` defaults to -32602 for INVALID_ARGUMENT, else -32000."""
    if rpc_code is None:
        rpc_code = (
            JsonRpcCode.INVALID_PARAMS if error.code is ErrorCode.INVALID_ARGUMENT else JsonRpcCode.APPLICATION_ERROR
        )
    return {
        "jsonrpc": JSONRPC_VERSION,
        "id": request_id,
        "error": {"code": int(rpc_code), "message": error.message, "data": error.to_data()},
    }


def notification(method: str, params: Any) -> dict[str, Any]:
    return {"jsonrpc": JSONRPC_VERSION, "method": method, "params": params}


def request(request_id: RequestId, method: str, params: Any | None = None) -> dict[str, Any]:
    """A request as the supervisor sends it; tests and fixtures use it."""
    return {"jsonrpc": JSONRPC_VERSION, "id": request_id, "method": method, "params": params or {}}
