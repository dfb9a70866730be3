"""The shared error table (DESIGN §3) and the one exception type that crosses the wire.

Mirrors ``dops.common.v1.ErrorCode`` (proto/dops/common/v1/errors.proto) without the
``ERROR_CODE_`` prefix; tests/protocol/test_error_contract.py keeps the two in step.
"""

from __future__ import annotations

import sys
from enum import Enum
from typing import Any


class ErrorCode(str, Enum):
    """String codes; never numbers on any wire."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    CANCELLED = "CANCELLED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    UNAVAILABLE = "UNAVAILABLE"
    UNSUPPORTED = "UNSUPPORTED"
    INTERNAL = "INTERNAL"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"


ERROR_CODES: frozenset[str] = frozenset(code.value for code in ErrorCode)

# Retrying can help only where the cause is transient: memory pressure, a busy or restarting
# worker. Everything else fails the same way twice.
_RETRYABLE_BY_DEFAULT = frozenset(
    {ErrorCode.OUT_OF_MEMORY, ErrorCode.RESOURCE_EXHAUSTED, ErrorCode.UNAVAILABLE}
)


class WorkerError(Exception):
    """An error with a code from the shared table; the server turns it into one JSON-RPC error.

    ``retryable`` defaults from the code (OUT_OF_MEMORY, RESOURCE_EXHAUSTED and UNAVAILABLE are
    retryable); ``fatal`` (default False) asks the supervisor to restart the worker after the reply.
    """

    def __init__(
        self,
        code: ErrorCode | str,
        message: str,
        *,
        retryable: bool | None = None,
        fatal: bool = False,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message
        self.retryable = self.code in _RETRYABLE_BY_DEFAULT if retryable is None else retryable
        self.fatal = fatal
        self.details = dict(details) if details else {}

    def to_data(self) -> dict[str, Any]:
        """The JSON-RPC ``error.data`` object: ``{code, retryable, fatal, details?}``."""
        data: dict[str, Any] = {
            "code": self.code.value,
            "retryable": self.retryable,
            "fatal": self.fatal,
        }
        if self.details:
            data["details"] = self.details
        return data

    def __repr__(self) -> str:
        return f"WorkerError({self.code.value}, {self.message!r}, fatal={self.fatal})"


class InvalidParams(WorkerError):
    """Bad request params; sent as JSON-RPC -32602 with ``details.field`` naming the field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(
            ErrorCode.INVALID_ARGUMENT,
            f"invalid params: {field}: {reason}",
            details={"field": field, "reason": reason},
        )
        self.field = field
        self.reason = reason


# Lower-cased message fragments, one per backend's allocator.
_OOM_MESSAGES = (
    "cuda out of memory",  # CUDA caching allocator (older torch raised a plain RuntimeError)
    "hip out of memory",  # ROCm
    "not enough gpu video memory",  # DirectML: "...There is not enough GPU video memory available!"
    "defaultcpuallocator: can't allocate memory",  # CPU tensors
    "out of memory",  # cuBLAS/cuDNN "CUBLAS_STATUS_ALLOC_FAILED"-style wrappers say this too
)

# The device or its context is gone; only a new process can use the device again.
_FATAL_MESSAGES = (
    "device-side assert triggered",
    "an illegal memory access was encountered",
    "unspecified launch failure",
    "dxgi_error_device_removed",
    "dxgi_error_device_hung",
    "dxgi_error_device_reset",
    "0x887a0005",  # DXGI_ERROR_DEVICE_REMOVED as an HRESULT
    "0x887a0006",  # DXGI_ERROR_DEVICE_HUNG
    "0x887a0007",  # DXGI_ERROR_DEVICE_RESET
)


def _torch_oom_types() -> tuple[type[BaseException], ...]:
    # Only consult torch if someone already imported it: classifying must not import torch.
    torch = sys.modules.get("torch")
    if torch is None:
        return ()
    types: list[type[BaseException]] = []
    for owner, name in ((getattr(torch, "cuda", None), "OutOfMemoryError"), (torch, "OutOfMemoryError")):
        candidate = getattr(owner, name, None) if owner is not None else None
        if isinstance(candidate, type) and issubclass(candidate, BaseException):
            types.append(candidate)
    return tuple(types)


def is_out_of_memory(exc: BaseException) -> bool:
    """True when ``exc`` is an allocator failure on any backend (CUDA, ROCm, DirectML, CPU)."""
    if isinstance(exc, MemoryError):
        return True
    oom_types = _torch_oom_types()
    if oom_types and isinstance(exc, oom_types):
        return True
    if type(exc).__name__ == "OutOfMemoryError":
        return True
    if isinstance(exc, RuntimeError):
        text = str(exc).lower()
        return any(fragment in text for fragment in _OOM_MESSAGES)
    return False


def is_device_lost(exc: BaseException) -> bool:
    """True when the device context cannot be trusted any more (restart the process)."""
    text = str(exc).lower()
    return any(fragment in text for fragment in _FATAL_MESSAGES)


def classify_exception(exc: BaseException) -> WorkerError:
    """Map any exception to a WorkerError; never raises. Unknown errors become INTERNAL."""
    if isinstance(exc, WorkerError):
        return exc
    message = f"{type(exc).__name__}: {exc}"
    if is_out_of_memory(exc):
        return WorkerError(ErrorCode.OUT_OF_MEMORY, message, details={"reason": "allocator"})
    if is_device_lost(exc):
        return WorkerError(ErrorCode.UNAVAILABLE, message, retryable=True, fatal=True,
                           details={"reason": "device lost"})
    return WorkerError(ErrorCode.INTERNAL, message)
