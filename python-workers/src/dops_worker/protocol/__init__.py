"""Wire protocol: NDJSON framing, JSON-RPC 2.0 messages, the shared error table.

Nothing here imports torch or any third-party package, so fixture workers and the supervisor's
tests can use it cheaply.
"""

from dops_worker.protocol.errors import (
    ERROR_CODES,
    ErrorCode,
    WorkerError,
    classify_exception,
    is_out_of_memory,
)
from dops_worker.protocol.framing import (
    DEFAULT_MAX_FRAME_BYTES,
    FrameReader,
    FrameTooLarge,
    FrameWriter,
    max_frame_bytes_from_env,
)
from dops_worker.protocol.messages import (
    PROTOCOL_VERSION,
    InvalidMessage,
    JsonRpcCode,
    Notification,
    Request,
    Response,
    error_response,
    notification,
    parse_message,
    result_response,
)

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "ERROR_CODES",
    "PROTOCOL_VERSION",
    "ErrorCode",
    "FrameReader",
    "FrameTooLarge",
    "FrameWriter",
    "InvalidMessage",
    "JsonRpcCode",
    "Notification",
    "Request",
    "Response",
    "WorkerError",
    "classify_exception",
    "error_response",
    "is_out_of_memory",
    "max_frame_bytes_from_env",
    "notification",
    "parse_message",
    "result_response",
]
