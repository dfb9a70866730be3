"""What a handler gets besides its params: its token, progress, the session, worker status."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from dops_worker.protocol.messages import RequestId
from dops_worker.runtime.cancellation import CancelToken
from dops_worker.runtime.telemetry import step_event

if TYPE_CHECKING:
    from dops_worker.runtime.session import Session


@dataclass
class RequestContext:
    request_id: RequestId
    method: str
    token: CancelToken
    session: Session
    notify: Callable[[str, Any], None]
    status: Callable[[], dict[str, Any]]
    # Set by a handler (worker.shutdown) to make the worker exit with this code after the reply.
    exit_after_reply: int | None = field(default=None)
    # Work that must happen before the next request but need not delay this reply (freeing memory
    # after a cancel): run on the execution thread right after the reply is written (after a
    # deferred reply: on the thread that completed it, the next request may already run).
    after_reply: list[Callable[[], None]] = field(default_factory=list)

    def progress(self, step: int, total: int, preview: dict[str, Any] | None = None,
                 phase: Literal["writing"] | None = None) -> None:
        """Sends ``$/progress {id, step, total, preview?, phase?}``; never raises on a closed pipe.

        ``phase="writing"``: the request's device work ended and only its file writes remain (its
        reply is deferred until they end); sent once, with ``step == total``."""
        step_event(step, total, phase)
        params: dict[str, Any] = {"id": self.request_id, "step": step, "total": total}
        if preview is not None:
            params["preview"] = preview
        if phase is not None:
            params["phase"] = phase
        self.notify("$/progress", params)
