"""``DOPS_BACKEND=auto|cuda|rocm|directml|cpu`` → the backend this worker runs.

The decision (``resolve_backend``) is pure; ``detect_availability`` is the part that looks at
the installed torch. torch_directml is never imported here, only located.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Literal, cast

from dops_worker.protocol.errors import ErrorCode, InvalidParams, WorkerError

BackendName = Literal["cuda", "rocm", "directml", "cpu"]
BACKENDS: tuple[BackendName, ...] = ("cuda", "rocm", "directml", "cpu")
BACKEND_CHOICES: tuple[str, ...] = ("auto", *BACKENDS)
BACKEND_ENV = "DOPS_BACKEND"
DEVICE_INDEX_ENV = "DOPS_DEVICE_INDEX"


@dataclass(frozen=True)
class Availability:
    """What the installed torch can drive: ``gpu`` = torch.cuda.is_available(), ``hip`` = ROCm build."""

    gpu: bool
    hip: bool
    directml: bool


def detect_availability() -> Availability:
    """Imports torch (not torch_directml); never raises for a missing GPU."""
    import torch

    gpu = bool(torch.cuda.is_available())
    hip = getattr(torch.version, "hip", None) is not None
    directml = importlib.util.find_spec("torch_directml") is not None
    return Availability(gpu=gpu, hip=hip, directml=directml)


def resolve_backend(requested: str, available: Availability, field: str = "backend") -> BackendName:
    """The backend to run for ``requested``.

    auto: cuda or rocm (rocm on a HIP build) when a GPU is available, else directml when
    torch_directml is installed, else cpu. Raises InvalidParams naming ``field`` for an unknown
    name and WorkerError FAILED_PRECONDITION when the requested backend is not usable here.
    """
    if requested not in BACKEND_CHOICES:
        raise InvalidParams(field, f"must be one of {', '.join(BACKEND_CHOICES)}")
    gpu_backend: BackendName = "rocm" if available.hip else "cuda"
    if requested == "auto":
        if available.gpu:
            return gpu_backend
        return "directml" if available.directml else "cpu"
    if requested in ("cuda", "rocm"):
        if requested != gpu_backend:
            raise _unusable(requested, f"this torch is a {gpu_backend} build")
        if not available.gpu:
            raise _unusable(requested, "torch.cuda.is_available() is False")
    if requested == "directml" and not available.directml:
        raise _unusable(requested, "torch_directml is not installed")
    return cast(BackendName, requested)


def _unusable(backend: str, reason: str) -> WorkerError:
    return WorkerError(ErrorCode.FAILED_PRECONDITION, f"backend {backend} is not usable: {reason}",
                       details={"field": "backend", "reason": reason})


def requested_backend_from_env() -> str:
    """``DOPS_BACKEND`` lower-cased, default ``auto`` (validated by resolve_backend)."""
    return os.environ.get(BACKEND_ENV, "auto").strip().lower() or "auto"


def device_index_from_env() -> int:
    """``DOPS_DEVICE_INDEX`` as a non-negative int, default 0; raises InvalidParams otherwise."""
    raw = os.environ.get(DEVICE_INDEX_ENV, "").strip()
    if not raw:
        return 0
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise InvalidParams(DEVICE_INDEX_ENV, "must be a non-negative integer")
    return value
