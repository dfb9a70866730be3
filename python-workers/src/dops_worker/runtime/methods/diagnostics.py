"""diagnostics.steps: a real sleeping loop for supervisor tests and the round-trip benchmark."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from dops_worker.runtime.context import RequestContext
from dops_worker.runtime.deferred import resolved_after
from dops_worker.runtime.params import get_int, require_object
from dops_worker.runtime.registry import method


@method("diagnostics.steps")
def steps(params: Any, ctx: RequestContext) -> dict[str, Any] | Future[dict[str, Any]]:
    """Sleeps ``stepMs`` per step, sends ``$/progress`` after each, stops at the first cancelled check.

    With ``writeMs`` > 0 it then acts as a generation whose PNG writes remain: sends
    ``$/progress {phase: "writing"}`` and returns a deferred reply that comes ``writeMs`` later,
    the execution thread free meanwhile (a cancel by then changes nothing)."""
    params = require_object(params, ("steps", "stepMs", "writeMs"))
    total = get_int(params, "steps", minimum=1, maximum=10_000, required=True)
    step_ms = get_int(params, "stepMs", minimum=0, maximum=60_000, required=True)
    write_ms = get_int(params, "writeMs", minimum=0, maximum=60_000, default=0)
    assert total is not None and step_ms is not None
    for step in range(1, total + 1):
        ctx.token.wait(step_ms / 1000.0)
        ctx.token.raise_if_cancelled()
        ctx.progress(step, total)
    if not write_ms:
        return {"completed": total}
    ctx.progress(total, total, phase="writing")
    return resolved_after(write_ms / 1000.0, {"completed": total})
