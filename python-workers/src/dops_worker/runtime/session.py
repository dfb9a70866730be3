"""Per-process state shared by handlers: the lifecycle state and, after initialize, the backend."""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from dops_worker.backends.base import Backend

LifecycleState = Literal["starting", "ready", "draining", "stopped"]


class Session:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.started_monotonic = time.monotonic()
        self.state: LifecycleState = "starting"
        self.backend: Backend | None = None
        self._lock = threading.Lock()

    @property
    def uptime_ms(self) -> int:
        return int((time.monotonic() - self.started_monotonic) * 1000)

    @property
    def initialized(self) -> bool:
        return self.backend is not None

    def set_state(self, state: LifecycleState) -> None:
        with self._lock:
            # stopped is final; draining never goes back to ready.
            if self.state == "stopped" or (self.state == "draining" and state == "ready"):
                return
            self.state = state
