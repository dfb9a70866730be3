"""Cancellation as a token: set by ``$/cancelRequest`` on the reader thread, or by the deadline."""

from __future__ import annotations

import threading
import time

from dops_worker.protocol.errors import ErrorCode, WorkerError


class CancelToken:
    """Observed by the running request between steps.

    ``deadline`` is absolute Unix epoch seconds (None = no deadline). Passing the deadline
    cancels the token with DEADLINE_EXCEEDED; ``cancel()`` cancels it with CANCELLED. The first
    reason wins.
    """

    def __init__(self, deadline: float | None = None, clock=time.time) -> None:
        self.deadline = deadline
        self._clock = clock
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._reason: ErrorCode | None = None

    def cancel(self, reason: ErrorCode = ErrorCode.CANCELLED) -> None:
        """Thread-safe; later calls keep the first reason."""
        with self._lock:
            if self._reason is None:
                self._reason = reason
        self._event.set()

    @property
    def reason(self) -> ErrorCode | None:
        self._check_deadline()
        return self._reason

    @property
    def is_cancelled(self) -> bool:
        return self.reason is not None

    def raise_if_cancelled(self) -> None:
        """Raises WorkerError CANCELLED or DEADLINE_EXCEEDED once the token is cancelled."""
        reason = self.reason
        if reason is ErrorCode.DEADLINE_EXCEEDED:
            raise WorkerError(ErrorCode.DEADLINE_EXCEEDED, "the request's deadline passed")
        if reason is not None:
            raise WorkerError(ErrorCode.CANCELLED, "the request was cancelled")

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking early on cancel or deadline; returns ``is_cancelled``."""
        timeout = max(0.0, seconds)
        if self.deadline is not None:
            timeout = min(timeout, max(0.0, self.deadline - self._clock()))
        self._event.wait(timeout)
        return self.is_cancelled

    def _check_deadline(self) -> None:
        if self._reason is None and self.deadline is not None and self._clock() >= self.deadline:
            self.cancel(ErrorCode.DEADLINE_EXCEEDED)
