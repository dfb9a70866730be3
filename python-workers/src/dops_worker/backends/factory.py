"""Creates the backend object for a resolved backend name; imports only that lane's modules."""

from __future__ import annotations

from dops_worker.backends.base import Backend
from dops_worker.backends.selection import BackendName


def create_backend(name: BackendName, index: int) -> Backend:
    """Raises InvalidParams (field deviceIndex) for a device the backend does not have."""
    if name == "cpu":
        from dops_worker.backends.cpu import CpuBackend
        from dops_worker.protocol.errors import InvalidParams

        if index != 0:
            raise InvalidParams("deviceIndex", "the cpu backend has one device, index 0")
        return CpuBackend(0)
    if name in ("cuda", "rocm"):
        from dops_worker.backends.cuda import CudaBackend

        return CudaBackend(index, name)
    from dops_worker.backends.directml import DirectMLBackend

    return DirectMLBackend(index)
