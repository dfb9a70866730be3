"""CUDA and ROCm (torch.cuda on a HIP build): devices by PCI id, memory from mem_get_info."""

from __future__ import annotations

from typing import Any

from dops_worker.backends.base import Backend
from dops_worker.protocol.errors import InvalidParams


def pci_device_id(domain: int, bus: int, device: int) -> str:
    """``pci:DDDD:BB:DD.0``, the form nvidia-smi and lspci print (function 0: GPUs expose one)."""
    return f"pci:{domain:04x}:{bus:02x}:{device:02x}.0"


def stable_device_id(props: Any, index: int) -> str:
    """PCI id when torch reports it, else the device UUID, else the ordinal as a last resort."""
    bus = getattr(props, "pci_bus_id", None)
    if isinstance(bus, int) and bus >= 0:
        return pci_device_id(getattr(props, "pci_domain_id", 0) or 0, bus, getattr(props, "pci_device_id", 0) or 0)
    uuid = getattr(props, "uuid", None)
    if uuid:
        return f"uuid:{uuid}"
    return f"ordinal:{index}"


class CudaBackend(Backend):
    memory_source = "torch.cuda.mem_get_info"

    def __init__(self, index: int, name: str = "cuda") -> None:
        import torch

        count = torch.cuda.device_count()
        if not 0 <= index < count:
            raise InvalidParams("deviceIndex", f"must be below the device count {count}")
        super().__init__(index)
        self.name = name  # type: ignore[assignment]
        self._torch = torch
        torch.cuda.set_device(index)

    @property
    def torch_device(self) -> str:
        return f"cuda:{self.index}"

    def describe(self) -> dict[str, Any]:
        props = self._torch.cuda.get_device_properties(self.index)
        return {
            "index": self.index,
            "id": stable_device_id(props, self.index),
            "backend": self.name,
            "name": props.name,
            "vendor": "AMD" if self.name == "rocm" else "NVIDIA",
            "totalMemoryBytes": int(props.total_memory),
        }

    def device_memory(self) -> dict[str, Any]:
        free, total = self._torch.cuda.mem_get_info(self.index)
        return {
            "totalBytes": int(total),
            "usedBytes": int(total - free),
            "freeBytes": int(free),
            # Live tensors; the allocator's cache (memory_reserved) is what memory.cleanup frees.
            "processUsedBytes": int(self._torch.cuda.memory_allocated(self.index)),
        }

    def releasable_bytes(self) -> int:
        return int(self._torch.cuda.memory_reserved(self.index))

    def release_caches(self) -> None:
        self._torch.cuda.synchronize(self.index)
        self._torch.cuda.empty_cache()
        self._torch.cuda.ipc_collect()
