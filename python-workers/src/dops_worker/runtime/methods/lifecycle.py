"""initialize, worker.ping, worker.shutdown."""

from __future__ import annotations

import platform
from typing import Any

from dops_worker.protocol.errors import ErrorCode, WorkerError
from dops_worker.protocol.messages import PROTOCOL_VERSION
from dops_worker.runtime.context import RequestContext
from dops_worker.runtime.params import get_enum, get_int, require_object
from dops_worker.runtime.registry import method


@method("initialize", requires_init=False)
def initialize(params: Any, ctx: RequestContext) -> dict[str, Any]:
    """Selects the backend (params, else DOPS_BACKEND/DOPS_DEVICE_INDEX) and probes the device."""
    from dops_worker.backends.selection import (
        BACKEND_CHOICES,
        detect_availability,
        device_index_from_env,
        requested_backend_from_env,
        resolve_backend,
    )

    params = require_object(params, ("protocolVersion", "backend", "deviceIndex"))
    version = get_int(params, "protocolVersion", minimum=0, maximum=2**31, required=True)
    if version != PROTOCOL_VERSION:
        raise WorkerError(ErrorCode.UNSUPPORTED, f"protocol version {version} is not supported",
                          details={"field": "protocolVersion", "supported": [PROTOCOL_VERSION]})
    backend_field = "backend" if params.get("backend") is not None else "DOPS_BACKEND"
    requested = get_enum(params, "backend", BACKEND_CHOICES) or requested_backend_from_env()
    device_index = get_int(params, "deviceIndex", minimum=0, maximum=1024)
    if device_index is None:
        device_index = device_index_from_env()
    if ctx.session.initialized:
        raise WorkerError(ErrorCode.FAILED_PRECONDITION, "the worker is already initialized")

    import torch

    from dops_worker.backends.factory import create_backend

    name = resolve_backend(requested, detect_availability(), field=backend_field)
    backend = create_backend(name, device_index)
    device = backend.device()  # the capability probe runs here, inside the handshake
    ctx.session.backend = backend
    ctx.session.set_state("ready")
    return {
        "protocolVersion": PROTOCOL_VERSION,
        "pid": ctx.session.pid,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "backend": name,
        "devices": [device],
    }


@method("worker.ping", inline=True, requires_init=False)
def ping(params: Any, ctx: RequestContext) -> dict[str, Any]:
    """Answered on the reader thread, so it also proves the worker is not wedged while busy."""
    require_object(params)
    return {"pid": ctx.session.pid, "uptimeMs": ctx.session.uptime_ms, **ctx.status()}


@method("worker.shutdown", requires_init=False, drains=True)
def shutdown(params: Any, ctx: RequestContext) -> dict[str, Any]:
    """Runs after every request accepted before it; the worker exits 0 after this reply."""
    require_object(params)
    ctx.exit_after_reply = 0
    return {}



