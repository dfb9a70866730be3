"""Files named in requests, checked once for every method: confinement to the worker's roots and
image headers. Images never travel inline; a request names a file, and the worker reads it only
inside its roots (symlinks resolved first, so a link cannot lead out)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dops_worker.protocol.errors import ErrorCode, WorkerError

READABLE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF")
MAX_INPUT_SIDE = 8192
MAX_INPUT_PIXELS = 40_000_000


@dataclass(frozen=True)
class ImageRef:
    path: Path
    width: int
    height: int
    format: str  # lower case: png, jpeg, webp, bmp, tiff


def invalid(field_name: str, reason: str, code: ErrorCode = ErrorCode.INVALID_ARGUMENT) -> WorkerError:
    """The error of a bad request field: ``details.field`` names it, ``details.reason`` says why."""
    return WorkerError(code, f"{field_name}: {reason}", details={"field": field_name, "reason": reason})


def confined(raw: str, roots: Sequence[Path], field_name: str, what: str = "the worker's allowed roots") -> Path:
    """``raw`` resolved (relative = against the first root); INVALID_ARGUMENT unless inside one of ``roots``."""
    if not raw:
        raise invalid(field_name, "must not be empty")
    path = (roots[0].resolve() / raw).resolve()  # an absolute raw replaces the root; symlinks resolved first
    if not any(path.is_relative_to(root.resolve()) for root in roots):
        raise invalid(field_name, f"must be inside {what}")
    return path


def read_image_header(value: Any, field_name: str, roots: Sequence[Path],
                      what: str = "the worker's allowed roots") -> ImageRef:
    """The image's size and format from its header (pixels are read later); INVALID_ARGUMENT for a
    non-image or one over MAX_INPUT_SIDE / MAX_INPUT_PIXELS, NOT_FOUND for a missing file."""
    if value is None:
        raise invalid(field_name, "is required")
    if not isinstance(value, str):
        raise invalid(field_name, "must be a path (string); images never travel inline")
    path = confined(value, roots, field_name, what)
    if not path.is_file():
        raise invalid(field_name, f"no such file: {value}", ErrorCode.NOT_FOUND)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path, formats=READABLE_FORMATS) as image:
            width, height = image.size
            fmt = (image.format or "").lower()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise invalid(field_name, f"is not a readable image: {exc}") from exc
    if width > MAX_INPUT_SIDE or height > MAX_INPUT_SIDE or width * height > MAX_INPUT_PIXELS:
        raise invalid(field_name, f"is too large ({width}x{height}); at most {MAX_INPUT_SIDE} px a side and "
                                  f"{MAX_INPUT_PIXELS} pixels")
    return ImageRef(path, width, height, fmt)
