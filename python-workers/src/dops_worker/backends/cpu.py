"""The CPU backend: one device, "cpu:0", with the host's cores and RAM."""

from __future__ import annotations

import platform
from typing import Any

import psutil

from dops_worker.backends.base import Backend
from dops_worker.backends.system import process_rss_bytes

_VENDORS = {"GenuineIntel": "Intel", "AuthenticAMD": "AMD", "HygonGenuine": "Hygon"}


def read_cpuinfo(path: str = "/proc/cpuinfo") -> dict[str, str]:
    """The first processor block of /proc/cpuinfo as a dict; {} where there is none."""
    info: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if not line.strip():
                    if info:
                        break
                    continue
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def cpu_name(info: dict[str, str]) -> str:
    return info.get("model name") or info.get("Model") or platform.processor() or platform.machine() or "cpu"


def cpu_vendor(info: dict[str, str]) -> str:
    vendor_id = info.get("vendor_id", "")
    if vendor_id:
        return _VENDORS.get(vendor_id, vendor_id)
    processor = platform.processor()
    for token, vendor in (("Intel", "Intel"), ("AMD", "AMD"), ("arm", "ARM")):
        if token.lower() in processor.lower():
            return vendor
    return platform.machine() or "unknown"


class CpuBackend(Backend):
    name = "cpu"
    memory_source = "os"

    @property
    def torch_device(self) -> str:
        return "cpu"

    def describe(self) -> dict[str, Any]:
        info = read_cpuinfo()
        logical = psutil.cpu_count(logical=True) or 1
        return {
            "index": self.index,
            "id": f"cpu:{self.index}",
            "backend": "cpu",
            "name": cpu_name(info),
            "vendor": cpu_vendor(info),
            "totalMemoryBytes": int(psutil.virtual_memory().total),
            # psutil returns None for physical cores where it cannot tell (some VMs).
            "cores": psutil.cpu_count(logical=False) or logical,
            "logicalCores": logical,
        }

    def device_memory(self) -> dict[str, Any]:
        vm = psutil.virtual_memory()
        return {
            "totalBytes": int(vm.total),
            "usedBytes": int(vm.total - vm.available),
            "freeBytes": int(vm.available),
            "processUsedBytes": process_rss_bytes(),
        }

    def releasable_bytes(self) -> int:
        return process_rss_bytes()

    def release_caches(self) -> None:
        _trim_heap()


def _trim_heap() -> None:
    # glibc keeps freed arenas; malloc_trim hands them back so RSS reflects the cleanup.
    if platform.system() != "Linux":
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
