"""Model file hashes for the images' metadata, in the forms A1111 and civitai read.

``sha256`` is the whole file's; AutoV2 is its first 10 hex digits (A1111's "Model hash",
civitai's AutoV2). A file is hashed once per version of it (path, size, mtime): a LoRA named by
many requests costs one read. Checkpoints are hashed by the model service in the background and
arrive with ``model.load``; nothing here runs on a checkpoint's load path.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

AUTOV2_DIGITS = 10
_HEX = frozenset("0123456789abcdef")


def autov2(sha256: str) -> str:
    """A1111's short hash of a file from its hex sha256."""
    return sha256[:AUTOV2_DIGITS]


def model_hashes(sha256: str) -> dict[str, str]:
    """``{"sha256", "autov2"}`` as generate stamps them into the images (the proto's modelHashes)."""
    return {"sha256": sha256, "autov2": autov2(sha256)}


def is_sha256_hex(value: object) -> bool:
    """True for 64 lower-case hex digits."""
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


class FileHashes:
    """sha256 of files, cached by (real path, size, mtime_ns); thread-safe. Raises OSError when a
    file cannot be read."""

    def __init__(self) -> None:
        self._digests: dict[str, tuple[tuple[int, int], str]] = {}
        self._lock = threading.Lock()

    def sha256(self, path: Path) -> str:
        stat = path.stat()
        stamp = (stat.st_size, stat.st_mtime_ns)
        key = str(path)
        with self._lock:
            cached = self._digests.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        with path.open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        with self._lock:
            self._digests[key] = (stamp, digest)
        return digest


file_hashes = FileHashes()
