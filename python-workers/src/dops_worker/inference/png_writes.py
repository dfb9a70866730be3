"""A run's PNG encoding and file writes on a small thread pool, off the GPU's critical path.

Pillow's zlib encoder and the file write + fsync release the GIL, so the images of a batch are
encoded side by side, and each image's encoding starts as soon as it is decoded — while the next
image (or the next chunk of an OOM-split batch) is still being decoded or denoised. The bytes are
the ones ``artifacts.write_image`` writes alone: each image is written by the same function.
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

    def wait(self) -> None:
        """Waits for every submitted write; never raises."""
        wait(list(self._futures.values()))
