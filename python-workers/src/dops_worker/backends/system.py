"""Host RAM and this process's RSS, through psutil."""

from __future__ import annotations

import os
from typing import Any

import psutil


def system_memory() -> dict[str, int]:
    vm = psutil.virtual_memory()
    return {"totalBytes": int(vm.total), "availableBytes": int(vm.available)}


def process_rss_bytes() -> int:
    return int(psutil.Process(os.getpid()).memory_info().rss)


def process_memory() -> dict[str, Any]:
    return {"pid": os.getpid(), "rssBytes": process_rss_bytes()}
