"""Images to PNG files in the output dir, atomically, with their generation parameters embedded.

Each PNG carries a ``parameters`` text chunk (the A1111 line that UIs and civitai read back) and
a ``dops`` iTXt chunk with every parameter as JSON. Nothing time-dependent goes in, so the same
request gives the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from dops_worker.inference.request import GenerateRequest
from dops_worker.models.hashes import autov2

PARAMETERS_KEY = "parameters"
DOPS_KEY = "dops"


def a1111_parameters(request: GenerateRequest, seed: int) -> str:
    """``prompt\\nNegative prompt: ...\\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: ..., ...``
    in A1111's order: Steps, Sampler, CFG scale, Seed, Size, Model hash (AutoV2, when known),
    Model (the file's stem), Denoising strength (img2img, inpaint), Clip skip (when > 1, as A1111
    writes it), Lora hashes (``"name: autov2, ..."``, quoted), Lora weights."""
    fields = [
        ("Steps", request.steps),
        ("Sampler", request.scheduler),
        ("CFG scale", f"{request.cfg_scale:g}"),
        ("Seed", seed),
        ("Size", f"{request.width}x{request.height}"),
    ]
    model_hash = request.model_hashes.get("autov2") or request.model_hashes.get("sha256")
    if model_hash:
        fields.append(("Model hash", autov2(model_hash)))
    fields.append(("Model", request.model_name or request.model))
    if request.mode != "txt2img":
        fields.append(("Denoising strength", f"{request.strength:g}"))
    if request.clip_skip > 1:
        fields.append(("Clip skip", request.clip_skip))
    hashed = [lora for lora in request.loras if lora.sha256]
    if hashed:
        lora_hashes = ", ".join(f"{lora.path.stem}: {autov2(lora.sha256)}" for lora in hashed)
        fields.append(("Lora hashes", f'"{lora_hashes}"'))
    if request.loras:
        loras = ", ".join(f"{lora.path.stem}: {lora.weight:g}" for lora in request.loras)
        fields.append(("Lora weights", f'"{loras}"'))
    lines = [request.prompt]
    if request.negative_prompt:
        lines.append(f"Negative prompt: {request.negative_prompt}")
    lines.append(", ".join(f"{key}: {value}" for key, value in fields))
    return "\n".join(lines)


def dops_metadata(request: GenerateRequest, seed: int, index: int) -> dict[str, Any]:
    """Every request parameter, the model hashes and this image's seed and batch index."""
    return {"version": 1, **request.to_json(), "seed": seed, "requestSeed": request.seed, "batchIndex": index}


def write_png(image: Any, directory: Path, name: str, text: dict[str, str]) -> dict[str, Any]:
    """Writes ``image`` (PIL) as ``directory/name`` via a temp file + rename; returns
    ``{path, sha256, width, height, format}``. Raises OSError on I/O failure (no partial file)."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in text.items():
        # tEXt is Latin-1 only; prompts are often not, so UTF-8 iTXt for those.
        try:
            value.encode("latin-1")
            info.add_text(key, value)
        except UnicodeEncodeError:
            info.add_itxt(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, compress_level=4)
    data = buffer.getvalue()
    path = write_artifact(data, directory, name)
    return {
        "path": str(path),
        "sha256": hashlib.sha256(data).hexdigest(),
        "width": image.width,
        "height": image.height,
        "format": "png",
    }


def write_artifact(data: bytes, directory: Path, name: str) -> Path:
    """``data`` as ``directory/name``, owner-only (0600 in folders created 0700: artifacts hold
    other people's prompts and images), via a temp file + rename so no reader sees a partial file.
    Raises OSError on I/O failure (no partial file left)."""
    make_owner_only_dirs(directory)
    path = directory / name
    # mkstemp creates the file 0600 whatever the umask; the rename keeps that mode.
    descriptor, temp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        try:
            os.unlink(temp_name)
        except FileNotFoundError:
            pass
        raise
    return path


def make_owner_only_dirs(directory: Path) -> None:
    """Creates ``directory`` and any missing parents 0700 (existing ones are left as they are:
    the artifact root belongs to the operator)."""
    missing = []
    while not directory.is_dir():
        missing.append(directory)
        directory = directory.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            pass  # made meanwhile by a concurrent request


def write_image(image: Any, request: GenerateRequest, seed: int, index: int, name: str) -> dict[str, Any]:
    """One generated image with both metadata chunks; see ``write_png``."""
    text = {
        PARAMETERS_KEY: a1111_parameters(request, seed),
        DOPS_KEY: json.dumps(dops_metadata(request, seed, index), ensure_ascii=False, sort_keys=True),
    }
    return write_png(image, request.output_dir, name, text)


def read_metadata(path: Path) -> dict[str, str]:
    """The PNG's text chunks (tEXt, zTXt and iTXt alike)."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        return dict(getattr(image, "text", {}))
