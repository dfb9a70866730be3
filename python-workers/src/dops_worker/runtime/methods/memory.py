"""memory.stats and memory.cleanup."""

from __future__ import annotations

from typing import Any

from dops_worker.backends.system import process_memory, process_rss_bytes, system_memory
from dops_worker.runtime.context import RequestContext
from dops_worker.runtime.params import require_object
from dops_worker.runtime.registry import method


@method("memory.stats", inline=True)
def stats(params: Any, ctx: RequestContext) -> dict[str, Any]:
    """Answered on the control thread, so memory is readable while a generation runs: the OS
    counters, and the backend's driver query (torch.cuda.mem_get_info, DXGI) — no kernel, no
    allocation on the device."""
    require_object(params)
    backend = ctx.session.backend
    assert backend is not None
    return {"system": system_memory(), "process": process_memory(), "devices": [backend.memory_entry()]}


@method("memory.cleanup")
def cleanup(params: Any, ctx: RequestContext) -> dict[str, Any]:
    """gc + the backend's cache release; freed bytes measured before and after (reserved VRAM, RSS)."""
    require_object(params)
    backend = ctx.session.backend
    assert backend is not None
    rss_before = process_rss_bytes()
    freed = backend.cleanup()
    return {
        "freedBytes": freed,
        "devices": [{"index": backend.index, "freedBytes": freed}],
        "rssBeforeBytes": rss_before,
        "rssAfterBytes": process_rss_bytes(),
    }
