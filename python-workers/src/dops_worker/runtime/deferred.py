"""Deferred replies: a handler that returns a ``Future`` frees the execution thread early.

The server takes a ``concurrent.futures.Future`` returned by a handler as "the reply comes later":
the next queued request starts at once, the request stays active (``activeRequests``, cancel
lookups) until the future completes, and its one reply (the future's result, or its exception
classified as any handler's) leaves from the thread that completed it. ``inference.generate``
returns one when only its PNG writes remain, so the next batch's GPU work overlaps them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")
U = TypeVar("U")

Deferred = Future  # what a handler returns for a deferred reply


def then(future: Future[T], transform: Callable[[T], U]) -> Future[U]:
    """A future of ``transform(future.result())``, computed on the thread that completes ``future``;
    an exception of either (or a cancelled ``future``) becomes the new future's exception."""
    out: Future[U] = Future()

    def settle(done: Future[T]) -> None:
        try:
            out.set_result(transform(done.result()))
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on ``out``
            out.set_exception(exc)

    future.add_done_callback(settle)
    return out


def resolved_after(seconds: float, value: T) -> Future[T]:
    """A future that gets ``value`` after ``seconds`` on a timer thread (diagnostics, tests)."""
    out: Future[T] = Future()
    timer = threading.Timer(seconds, lambda: out.set_result(value))
    timer.daemon = True
    timer.start()
    return out
