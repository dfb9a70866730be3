"""``postprocess.run`` params → a typed, validated PostprocessRequest, before any work is done.

One operation per request (``upscale``, ``faceRestore``, ``safety``, ``convert``). ``params`` is
the proto3 JSON form of ``dops.worker.v1.PostprocessParams`` (tests/protocol/test_worker_contract.py
keeps the two in step): a string field holding "" (what a protobuf library writes for an unset
one) or any ``null`` is absent, so the empty fields of other operations are no error; integers may
be decimal strings. Every failure is a WorkerError naming the field in ``details.field``
(camelCase, as on the wire). Only image headers are read here; the pixels are read when the
operation runs. Every path goes through
``protocol.files.confined``: the image under the input or artifact roots, the output under the
artifact roots, the model under the model roots.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dops_worker.models.weights import (
    PICKLE_SUFFIXES,
    SAFETENSORS_SUFFIX,
    require_pickle_allowed,
    require_safetensors_folder,
)
from dops_worker.protocol.errors import ErrorCode, WorkerError
from dops_worker.protocol.files import ImageRef, Roots, confined, invalid, read_image_header
from dops_worker.protocol.proto_json import integer, number, without_defaults
from dops_worker.runtime.params import META_KEY

Operation = Literal["upscale", "faceRestore", "safety", "convert"]
OPERATIONS: tuple[Operation, ...] = ("upscale", "faceRestore", "safety", "convert")
Policy = Literal["flag", "blur", "block"]
POLICIES: tuple[Policy, ...] = ("flag", "blur", "block")
Format = Literal["png", "jpeg", "webp"]
FORMATS: tuple[Format, ...] = ("png", "jpeg", "webp")

# Inputs: one side at most 8192 px and 40 MP; upscaled outputs at most 16384 px a side and 64 MP
# (the float32 accumulation buffers of a 64 MP tiled upscale take ~1.5 GB).
MAX_OUTPUT_SIDE = 16384
MAX_OUTPUT_PIXELS = 64_000_000
DEFAULT_TILE_SIZE = 512
DEFAULT_TILE_OVERLAP = 32
DEFAULT_FACE_SIZE = 512  # GFPGAN, CodeFormer and RestoreFormer restore 512² aligned faces
DEFAULT_QUALITY = {"jpeg": 90, "webp": 80}
# The formats PIL may read an input as; anything else (e.g. a PDF or EPS, which run Ghostscript) is refused.

_COMMON = {"operation", "image", "outputDir", META_KEY}
_FIELDS: dict[str, set[str]] = {
    "upscale": {"modelPath", "tileSize", "tileOverlap"},
    "faceRestore": {"modelPath", "strength", "faceSize"},
    "safety": {"modelPath", "policy", "blurRadius"},
    "convert": {"format", "quality"},
}
# The json names of PostprocessParams.
FIELDS = frozenset((_COMMON - {META_KEY}).union(*_FIELDS.values()))
# Its fields without presence (the strings), absent when "".
_NO_PRESENCE_DEFAULTS: dict[str, object] = {
    "operation": "", "image": "", "outputDir": "", "modelPath": "", "policy": "", "format": "",
}


@dataclass(frozen=True)
class PostprocessRequest:
    operation: Operation
    image: ImageRef
    output_dir: Path
    model_path: Path | None = None
    tile_size: int = DEFAULT_TILE_SIZE  # 0 = one pass over the whole image
    tile_overlap: int = DEFAULT_TILE_OVERLAP
    strength: float = 1.0
    face_size: int = DEFAULT_FACE_SIZE
    policy: Policy = "flag"
    blur_radius: float | None = None  # None = scaled to the image (operations.blur_radius_for)
    format: Format = "png"
    quality: int | None = None


def parse_postprocess_request(params: Any, *, input_roots: Roots, artifact_roots: Roots,
                              model_roots: Roots) -> PostprocessRequest:
    """Raises WorkerError INVALID_ARGUMENT (or NOT_FOUND for a missing file) naming the field."""
    if not isinstance(params, dict):
        raise invalid("params", "must be an object")
    for key in params:
        if key not in FIELDS and key != META_KEY:
            raise invalid(key, "unknown field")
    params = without_defaults(params, _NO_PRESENCE_DEFAULTS)
    operation = params.get("operation")
    if operation not in OPERATIONS:
        raise invalid("operation", f"must be one of {', '.join(OPERATIONS)}")
    allowed = _COMMON | _FIELDS[operation]
    for key in params:
        if key not in allowed:
            raise invalid(key, f"is not a field of operation {operation}")
    image = read_image_header(params.get("image"), "image", input_roots + artifact_roots)
    output_dir = confined(_string(params, "outputDir", required=True), artifact_roots, "outputDir")
    fields: dict[str, Any] = {}
    if operation == "upscale":
        fields["model_path"] = _model_file(params, "modelPath", model_roots)
        fields["tile_size"] = _int(params, "tileSize", 0, 2048, DEFAULT_TILE_SIZE)
        if 0 < fields["tile_size"] < 32:
            raise invalid("tileSize", "must be 0 (no tiling) or between 32 and 2048")
        fields["tile_overlap"] = _int(params, "tileOverlap", 0, 256, DEFAULT_TILE_OVERLAP)
        if fields["tile_size"] and fields["tile_overlap"] * 2 >= fields["tile_size"]:
            raise invalid("tileOverlap", "must be less than half of tileSize")
    elif operation == "faceRestore":
        fields["model_path"] = _model_file(params, "modelPath", model_roots)
        fields["strength"] = _number(params, "strength", 0.0, 1.0, 1.0)
        fields["face_size"] = _int(params, "faceSize", 64, 1024, DEFAULT_FACE_SIZE)
        if fields["face_size"] % 32:
            raise invalid("faceSize", "must be a multiple of 32")
    elif operation == "safety":
        fields["model_path"] = _model_folder(params, "modelPath", model_roots)
        policy = params.get("policy", "flag")
        if policy not in POLICIES:
            raise invalid("policy", f"must be one of {', '.join(POLICIES)}")
        fields["policy"] = policy
        if params.get("blurRadius") is not None:
            fields["blur_radius"] = _number(params, "blurRadius", 1.0, 512.0, None)
    else:
        fmt = params.get("format")
        if fmt not in FORMATS:
            raise invalid("format", f"must be one of {', '.join(FORMATS)}")
        fields["format"] = fmt
        if params.get("quality") is not None:
            if fmt == "png":
                raise invalid("quality", "is only allowed for jpeg and webp (png is lossless)")
            fields["quality"] = _int(params, "quality", 1, 100, None)
    return PostprocessRequest(operation=operation, image=image, output_dir=output_dir, **fields)


def _string(params: dict[str, Any], name: str, *, required: bool = False) -> str:
    value = params.get(name)
    if value is None:
        if required:
            raise invalid(name, "is required")
        return ""
    if not isinstance(value, str):
        raise invalid(name, "must be a string")
    return value


def _int(params: dict[str, Any], name: str, minimum: int, maximum: int, default: int | None) -> Any:
    value = params.get(name)
    if value is None:
        return default
    value = integer(value, name)
    if not minimum <= value <= maximum:
        raise invalid(name, f"must be between {minimum} and {maximum}")
    return value


def _number(params: dict[str, Any], name: str, minimum: float, maximum: float, default: float | None) -> Any:
    value = params.get(name)
    if value is None:
        return default
    reason = f"must be a number between {minimum:g} and {maximum:g}"
    try:
        value = number(value, name)
    except WorkerError:
        raise invalid(name, reason) from None
    if not minimum <= value <= maximum:
        raise invalid(name, reason)
    return value


def _model_file(params: dict[str, Any], name: str, roots: Roots) -> Path:
    """A spandrel model file in the model roots: ``.safetensors``, or a pickle (.pth/.pt/.ckpt/.bin)
    where the node allows pickle (loaded weights-only even then)."""
    path = confined(_string(params, name, required=True), roots, name)
    if not path.is_file():
        raise invalid(name, f"no such file: {params[name]}", ErrorCode.NOT_FOUND)
    if path.suffix.lower() not in PICKLE_SUFFIXES | {SAFETENSORS_SUFFIX}:
        raise invalid(name, "must be a .safetensors file")
    require_pickle_allowed(path, name)
    return path


def _model_folder(params: dict[str, Any], name: str, roots: Roots) -> Path:
    path = confined(_string(params, name, required=True), roots, name)
    if not path.is_dir():
        raise invalid(name, f"no such folder: {params[name]}", ErrorCode.NOT_FOUND)
    require_safetensors_folder(path, roots, name)  # first: no file of it is looked at before its links are
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise invalid(name, "must be a safety checker folder with config.json and model.safetensors")
    return path
