"""What every backend provides to the methods: its device description, memory, cleanup."""

from __future__ import annotations

import gc
from abc import ABC, abstractmethod
from typing import Any

from dops_worker.backends.capabilities import probe_capabilities
from dops_worker.backends.selection import BackendName


class Backend(ABC):
    """One device of one backend; the worker owns exactly this device.

    ``device()`` is probed once and cached; ``probe()`` runs the probe again.
    """

    name: BackendName
    memory_source: str

    def __init__(self, index: int) -> None:
        self.index = index
        self._device: dict[str, Any] | None = None

    @property
    @abstractmethod
    def torch_device(self) -> str:
        """The string torch accepts, e.g. "cuda:0", "privateuseone:0", "cpu"."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """The Device fields except ``capabilities``."""

    @abstractmethod
    def device_memory(self) -> dict[str, Any]:
        """``{totalBytes, usedBytes, freeBytes, processUsedBytes}`` of this device."""

    @abstractmethod
    def releasable_bytes(self) -> int:
        """What ``cleanup`` can give back, measured before and after it (reserved VRAM, RSS, ...)."""

    def release_caches(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Backend-specific cache release after gc (torch.cuda.empty_cache and the like)."""

    def device(self) -> dict[str, Any]:
        if self._device is None:
            self._device = self.probe()
        return self._device

    def probe(self) -> dict[str, Any]:
        device = self.describe()
        device["capabilities"] = probe_capabilities(self.torch_device, self.name)
        self._device = device
        return device

    def memory_entry(self) -> dict[str, Any]:
        device = self.device()
        return {"index": self.index, "id": device["id"], **self.device_memory(), "source": self.memory_source}

    def cleanup(self) -> int:
        """gc + cache release; returns bytes freed (never negative)."""
        before = self.releasable_bytes()
        gc.collect()
        self.release_caches()
        return max(0, before - self.releasable_bytes())
