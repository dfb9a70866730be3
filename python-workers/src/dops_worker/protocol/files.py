"""Files named in requests, checked once for every method: confinement to the worker's roots and
image headers. Images never travel inline; a request names a file, and the worker reads it only
inside its roots (symlinks resolved first, so a link cannot lead out).

``confined`` is the one gate every request path goes through (checkpoints, LoRAs, ControlNets,
postprocessing models, config folders, input images, masks, control images, output folders);
``confined_files`` extends it to the files inside a model folder, which a loader would follow.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dops_worker.protocol.errors import ErrorCode, WorkerError

READABLE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF")
MAX_INPUT_SIDE = 8192
MAX_INPUT_PIXELS = 40_000_000
_SEPARATORS = re.compile(r"[\\/]")  # both, so a Windows-style "..\\" is caught on any OS


@dataclass(frozen=True)
class Roots:
    """Folders a request path may lead into, and how errors name them ("the model roots
    (DOPS_MODEL_ROOTS)"). A relative request path is taken against the first one; none at all
    refuses every path (the secure default for an unset setting)."""

    name: str
    paths: tuple[Path, ...]

    def __add__(self, other: Roots) -> Roots:
        return Roots(f"{self.name} or {other.name}", self.paths + other.paths)


@dataclass(frozen=True)
class ImageRef:
    path: Path
    width: int
    height: int
    format: str  # lower case: png, jpeg, webp, bmp, tiff


def invalid(field_name: str, reason: str, code: ErrorCode = ErrorCode.INVALID_ARGUMENT) -> WorkerError:
    """The error of a bad request field: ``details.field`` names it, ``details.reason`` says why."""
    return WorkerError(code, f"{field_name}: {reason}", details={"field": field_name, "reason": reason})


def confined(raw: Any, roots: Roots, field_name: str) -> Path:
    """The real path of ``raw`` (relative = against the first root); INVALID_ARGUMENT naming
    ``field_name`` unless it is a normal path whose real path lies under one of ``roots``.

    Symlinks are resolved before the comparison (with the roots' own links resolved too), so a
    link inside a root cannot lead out. A path outside gets the same answer whether or not it
    exists — existence is for the caller to check, inside the roots only — so a request cannot
    probe the rest of the disk.
    """
    if not isinstance(raw, str):
        raise invalid(field_name, "must be a path (string)")
    if not raw:
        raise invalid(field_name, "must not be empty")
    if "\x00" in raw:
        raise invalid(field_name, "must not contain NUL bytes")
    if ".." in _SEPARATORS.split(raw):
        # Refused rather than normalised: a path that climbs out and back in is never what a
        # well-behaved caller sends, and normalising before resolving links would be wrong anyway.
        raise invalid(field_name, "must not contain '..' segments")
    real_roots = _real(roots)
    if not real_roots:
        raise invalid(field_name, f"is outside {roots.name}: none are configured")
    # An absolute raw replaces the root; a real root is absolute, so the join always is too.
    real = Path(os.path.realpath(os.path.join(real_roots[0], raw)))
    if not _under(real, real_roots):
        raise invalid(field_name, f"is outside {roots.name}")
    return real


def confined_files(folder: Path, roots: Roots, field_name: str) -> list[Path]:
    """Every file in the tree of ``folder`` (already ``confined``), as named in the tree (a loader
    picks files by these names); INVALID_ARGUMENT when one, or a folder in it, is a link whose
    real path leads outside ``roots`` — a loader opening the folder would follow it."""
    real_roots = _real(roots)
    files: list[Path] = []
    for directory, names in _walk(folder):
        _require_under(directory, real_roots, roots, field_name)
        files.extend(_require_under(directory / name, real_roots, roots, field_name) for name in names)
    return files


def _require_under(path: Path, real_roots: Sequence[Path], roots: Roots, field_name: str) -> Path:
    if not _under(Path(os.path.realpath(path)), real_roots):
        raise invalid(field_name, f"holds a link that leads outside {roots.name}")
    return path


def _walk(folder: Path) -> Iterator[tuple[Path, list[str]]]:
    """``(directory, file names)`` through links, each real directory once (a link loop ends)."""
    seen: set[str] = set()
    for directory, subdirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(directory)
        if real in seen:
            subdirs[:] = []
            continue
        seen.add(real)
        yield Path(directory), names


def _real(roots: Roots) -> list[Path]:
    return [Path(os.path.realpath(root)) for root in roots.paths]


def _under(path: Path, real_roots: Sequence[Path]) -> bool:
    return any(path.is_relative_to(root) for root in real_roots)


def read_image_header(value: Any, field_name: str, roots: Roots) -> ImageRef:
    """The image's size and format from its header (pixels are read later); INVALID_ARGUMENT for a
    non-image or one over MAX_INPUT_SIDE / MAX_INPUT_PIXELS, NOT_FOUND for a missing file."""
    if value is None:
        raise invalid(field_name, "is required")
    if not isinstance(value, str):
        raise invalid(field_name, "must be a path (string); images never travel inline")
    path = confined(value, roots, field_name)
    if not path.is_file():
        raise invalid(field_name, f"no such file: {value}", ErrorCode.NOT_FOUND)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path, formats=READABLE_FORMATS) as image:
            width, height = image.size
            fmt = (image.format or "").lower()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        # PIL's own message may carry values read from the file; the reply never does.
        raise invalid(field_name, "is not a readable image") from exc
    if width > MAX_INPUT_SIDE or height > MAX_INPUT_SIDE or width * height > MAX_INPUT_PIXELS:
        raise invalid(field_name, f"is too large ({width}x{height}); at most {MAX_INPUT_SIDE} px a side and "
                                  f"{MAX_INPUT_PIXELS} pixels")
    return ImageRef(path, width, height, fmt)
