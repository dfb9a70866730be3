"""NDJSON framing over binary streams: one UTF-8 JSON value per ``\\n``-terminated line.

Binary, never text mode: Windows text streams would turn ``\\n`` into ``\\r\\n``. The frame
limit counts the bytes of a line without its terminator.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024
MAX_FRAME_ENV = "DOPS_WORKER_MAX_FRAME_BYTES"

_log = logging.getLogger(__name__)


class FrameTooLarge(Exception):
    """A frame longer than the limit; ``size`` is how many bytes it had (at least)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes exceeds the {limit}-byte limit")
        self.size = size
        self.limit = limit


def max_frame_bytes_from_env(environ: dict[str, str] | None = None) -> int:
    """``DOPS_WORKER_MAX_FRAME_BYTES`` as a positive int; warns and defaults to 16 MiB otherwise."""
    raw = (os.environ if environ is None else environ).get(MAX_FRAME_ENV)
    if raw is None or raw.strip() == "":
        return DEFAULT_MAX_FRAME_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        _log.warning("ignoring %s=%r: not a positive integer", MAX_FRAME_ENV, raw)
        return DEFAULT_MAX_FRAME_BYTES
    return value


@dataclass(frozen=True)
class Frame:
    """One line read: ``payload`` without the terminator, or ``oversized`` bytes dropped."""

    payload: bytes
    oversized: int = 0


class FrameReader:
    """Reads frames from a binary stream; blocks until a whole line (or EOF) arrives.

    A line over the limit is skipped to its end and reported as ``Frame(b"", oversized=n)`` so the
    caller can answer it and keep reading. Blank lines are skipped; a trailing line without ``\\n``
    at EOF still counts as a frame.
    """

    def __init__(self, stream: IO[bytes], max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self._stream = stream
        self.max_frame_bytes = max_frame_bytes

    def read_frame(self) -> Frame | None:
        """The next frame, or None at EOF."""
        while True:
            # +2 leaves room for "\r\n" after a frame of exactly the limit.
            line = self._stream.readline(self.max_frame_bytes + 2)
            if not line:
                return None
            if not line.endswith(b"\n") and len(line) > self.max_frame_bytes:
                return Frame(b"", oversized=len(line) + self._skip_rest_of_line())
            payload = line.rstrip(b"\r\n")
            if len(payload) > self.max_frame_bytes:
                return Frame(b"", oversized=len(payload))
            if payload.strip():
                return Frame(payload)

    def _skip_rest_of_line(self) -> int:
        skipped = 0
        while True:
            chunk = self._stream.readline(1024 * 1024)
            if not chunk:
                return skipped
            if chunk.endswith(b"\n"):
                return skipped + len(chunk) - 1
            skipped += len(chunk)

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.read_frame()) is not None:
            yield frame


def encode_frame(message: Any, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> bytes:
    """Compact UTF-8 JSON plus ``\\n``. Raises FrameTooLarge over the limit, ValueError on NaN."""
    data = json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    if len(data) > max_frame_bytes:
        raise FrameTooLarge(len(data), max_frame_bytes)
    return data + b"\n"


class FrameWriter:
    """Writes whole frames under a lock, so threads never interleave bytes; flushes each frame."""

    def __init__(self, stream: IO[bytes], max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self.max_frame_bytes = max_frame_bytes

    def write(self, message: Any) -> None:
        """Raises FrameTooLarge (nothing written) or OSError when the peer has gone."""
        data = encode_frame(message, self.max_frame_bytes)
        with self._lock:
            self._stream.write(data)
            self._stream.flush()

    def write_raw(self, data: bytes) -> None:
        """Writes bytes as they are; fixture workers use it to break the protocol on purpose."""
        with self._lock:
            self._stream.write(data)
            self._stream.flush()
