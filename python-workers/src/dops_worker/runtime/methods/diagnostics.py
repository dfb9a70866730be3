"""diagnostics.steps: a real sleeping loop for supervisor tests and the round-trip benchmark."""

from __future__ import annotations

from typing import Any

from dops_worker.runtime.context import RequestContext
from dops_worker.runtime.params import get_int, require_object
from dops_worker.runtime.registry import method


@method("diagnostics.steps")
def steps(params: Any, ctx: RequestContext) -> dict[str, Any]:
    """Sleeps ``stepMs`` per step, sends ``$/progress`` after each, stops at the first cancelled check."""
    params = require_object(params, ("steps", "stepMs"))
    total = get_int(params, "steps", minimum=1, maximum=10_000, required=True)
    step_ms = get_int(params, "stepMs", minimum=0, maximum=60_000, required=True)
    assert total is not None and step_ms is not None
    for step in range(1, total + 1):
        ctx.token.wait(step_ms / 1000.0)
        ctx.token.raise_if_cancelled()
        ctx.progress(step, total)
    return {"completed": total}
