"""Keep stdout for frames only. Must run before any library is imported."""

from __future__ import annotations

import io
import os
import sys
from typing import BinaryIO


def guard_stdout() -> tuple[BinaryIO, BinaryIO]:
    """Take the process's stdin/stdout for frames; returns ``(frames_in, frames_out)`` binary streams.

    File descriptor 1 is duplicated for frames and then pointed at stderr, so that ``print``,
    ``sys.stdout.write`` and native code writing to fd 1 (CUDA, DirectML, C printf) all land on
    stderr instead of corrupting the protocol. Never raises on a platform with file descriptors.
    """
    sys.stdout.flush()
    frames_fd = os.dup(1)
    os.dup2(2, 1)
    if hasattr(os, "set_inheritable"):
        os.set_inheritable(frames_fd, False)  # child processes must not get the protocol channel
    frames_out = open(frames_fd, "wb", buffering=0, closefd=True)
    sys.stdout = sys.stderr
    # Python's own stdout buffer object still points at fd 1, which now is stderr: harmless.
    frames_in = sys.stdin.buffer
    # Nothing else should read the protocol channel (input(), pdb, ...).
    sys.stdin = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    return frames_in, frames_out  # type: ignore[return-value]
