"""device.probe."""

from __future__ import annotations

from typing import Any

from dops_worker.runtime.context import RequestContext
from dops_worker.runtime.params import require_object
from dops_worker.runtime.registry import method


@method("device.probe")
def probe(params: Any, ctx: RequestContext) -> dict[str, Any]:
    """Runs the capability probe again (after a driver hiccup, or to re-check a cordoned device)."""
    require_object(params)
    assert ctx.session.backend is not None  # requires_init guarantees it
    return {"devices": [ctx.session.backend.probe()]}
