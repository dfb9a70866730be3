"""A run's PNG encoding and file writes on a small thread pool, off the GPU's critical path.

Pillow's zlib encoder and the file write + fsync release the GIL, so the images of a batch are
encoded side by side, and each image's encoding starts as soon as it is decoded — while the next
image (or the next chunk of an OOM-split batch) is still being decoded or denoised. The bytes are
the ones ``artifacts.write_image`` writes alone: each image is written by the same function.
``finished`` lets a run's reply wait for its writes off the execution thread (a deferred reply,
runtime/deferred.py), so the next request's GPU work starts while they run.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

# Enough for a batch of 4 to 8 images at once without taking every core from the launch thread.
MAX_WRITERS = max(1, min(4, (os.cpu_count() or 2) - 1))

_executor: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=MAX_WRITERS, thread_name_prefix="png-writer")
        return _executor


class PngWrites:
    """The writes of one run, in image order. ``submit`` starts one; ``results`` waits for all of
    them and returns their results in order, or raises the first failure (after every write has
    ended, so no write of a failed run is still going when its reply leaves)."""

    def __init__(self) -> None:
        self._futures: dict[int, Future[dict[str, Any]]] = {}

    def submit(self, index: int, write: Callable[[], dict[str, Any]]) -> None:
        self._futures[index] = _pool().submit(write)

    def results(self) -> list[dict[str, Any]]:
        self.wait()
        return [self._futures[index].result() for index in sorted(self._futures)]

    def finished(self) -> Future[list[dict[str, Any]]]:
        """A future of ``results()``, set on the thread of the write that ends last (at once when
        there is none): the run's reply can wait on it without holding the execution thread."""
        futures = list(self._futures.values())
        out: Future[list[dict[str, Any]]] = Future()
        remaining = len(futures)
        lock = threading.Lock()

        def settle() -> None:
            try:
                out.set_result(self.results())
            except BaseException as exc:  # noqa: BLE001 - the first failed write is the run's error
                out.set_exception(exc)

        def one_ended(_: Future[dict[str, Any]]) -> None:
            nonlocal remaining
            with lock:
                remaining -= 1
                last = remaining == 0
            if last:
                settle()

        if not futures:
            settle()
        for future in futures:
            future.add_done_callback(one_ended)
        return out

    def wait(self) -> None:
        """Waits for every submitted write; never raises."""
        wait(list(self._futures.values()))
