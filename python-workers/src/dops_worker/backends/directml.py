"""The DirectML lane (Windows, torch 2.4.1 + torch-directml): the only module importing torch_directml."""

from __future__ import annotations

import os
from typing import Any

from dops_worker.backends.base import Backend
from dops_worker.backends.directml_memory import AdapterInfo, dedicated_usage, enumerate_adapters, match_adapter
from dops_worker.protocol.errors import ErrorCode, InvalidParams, WorkerError


class DirectMLBackend(Backend):
    name = "directml"
    memory_source = "dxgi+pdh"

    def __init__(self, index: int) -> None:
        import torch_directml

        count = torch_directml.device_count()
        if not 0 <= index < count:
            raise InvalidParams("deviceIndex", f"must be below the device count {count}")
        super().__init__(index)
        names = [torch_directml.device_name(i) for i in range(count)]
        self._dml_name = names[index]
        self._adapter: AdapterInfo | None = match_adapter(names, index, enumerate_adapters())

    @property
    def torch_device(self) -> str:
        return f"privateuseone:{self.index}"

    def describe(self) -> dict[str, Any]:
        adapter = self._adapter
        return {
            "index": self.index,
            "id": adapter.luid.device_id if adapter else f"directml:{self.index}",
            "backend": "directml",
            "name": adapter.description if adapter else self._dml_name,
            "vendor": adapter.vendor if adapter else "unknown",
            "totalMemoryBytes": adapter.dedicated_video_memory if adapter else 0,
        }

    def _adapter_or_raise(self) -> AdapterInfo:
        if self._adapter is None:
            raise WorkerError(ErrorCode.UNAVAILABLE, f"no DXGI adapter matches DirectML device {self._dml_name!r}",
                              retryable=False)
        return self._adapter

    def device_memory(self) -> dict[str, Any]:
        adapter = self._adapter_or_raise()
        used, process_used = dedicated_usage(adapter.luid, os.getpid())
        total = adapter.dedicated_video_memory
        return {"totalBytes": total, "usedBytes": used, "freeBytes": max(0, total - used),
                "processUsedBytes": process_used}

    def releasable_bytes(self) -> int:
        adapter = self._adapter_or_raise()
        return dedicated_usage(adapter.luid, os.getpid())[1]
