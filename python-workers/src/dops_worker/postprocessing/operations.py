"""The four operations on a validated PostprocessRequest; each returns ``{image, ...extras}``.

``image`` is the artifact ``{path, sha256, width, height, format}`` written under the request's
output dir (PNG via the inference artifact writer, JPEG/WebP the same atomic way), or, where the
operation leaves the image as it is (a safety check that passes or only flags), the input file
described the same way. A blocked image gets no artifact: ``image`` is None and ``blocked`` true.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dops_worker.inference.artifacts import write_artifact, write_png
from dops_worker.postprocessing.models import ModelCache
from dops_worker.postprocessing.request import (
    DEFAULT_QUALITY,
    MAX_OUTPUT_PIXELS,
    MAX_OUTPUT_SIDE,
    PostprocessRequest,
    invalid,
)
from dops_worker.postprocessing.tiling import run_tiled, tile_count

EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}
PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


@dataclass
class Hooks:
    progress: Callable[[int, int], None]
    raise_if_cancelled: Callable[[], None]


def run(request: PostprocessRequest, models: ModelCache, device: str, hooks: Hooks) -> dict[str, Any]:
    """Raises WorkerError (INVALID_ARGUMENT naming the field, CANCELLED, DEADLINE_EXCEEDED)."""
    hooks.raise_if_cancelled()
    if request.operation == "upscale":
        return upscale(request, models, device, hooks)
    if request.operation == "faceRestore":
        return restore_faces(request, models, device, hooks)
    if request.operation == "safety":
        return check_safety(request, models, device, hooks)
    return convert(request, hooks)


def upscale(request: PostprocessRequest, models: ModelCache, device: str, hooks: Hooks) -> dict[str, Any]:
    assert request.model_path is not None
    descriptor = models.image_model(request.model_path, device, "modelPath", face=False)
    scale = int(descriptor.scale)
    width, height = request.image.width * scale, request.image.height * scale
    if width > MAX_OUTPUT_SIDE or height > MAX_OUTPUT_SIDE or width * height > MAX_OUTPUT_PIXELS:
        raise invalid("image", f"upscaled {scale}x it would be {width}x{height}; at most {MAX_OUTPUT_SIDE} px a "
                               f"side and {MAX_OUTPUT_PIXELS} pixels")
    rgb, alpha = _load_rgb(request.image.path)
    total = tile_count(rgb.width, rgb.height, request.tile_size, request.tile_overlap)
    output = run_tiled(_on_device(descriptor, device), _to_tensor(rgb), scale=scale, tile=request.tile_size,
                       overlap=request.tile_overlap, requirements=descriptor.size_requirements,
                       before_tile=hooks.raise_if_cancelled, after_tile=hooks.progress)
    image = _with_alpha(_to_image(output), alpha)
    return {"image": _write_png(image, request, "upscale"), "scale": scale,
            "architecture": descriptor.architecture.id, "tiles": total}


def restore_faces(request: PostprocessRequest, models: ModelCache, device: str, hooks: Hooks) -> dict[str, Any]:
    """The whole image is taken as one aligned face crop (no face detection), restored at
    ``faceSize``², scaled back and mixed with the original by ``strength``."""
    from PIL import Image

    assert request.model_path is not None
    descriptor = models.image_model(request.model_path, device, "modelPath", face=True)
    rgb, alpha = _load_rgb(request.image.path)
    face = rgb.resize((request.face_size, request.face_size), Image.Resampling.LANCZOS)
    output = run_tiled(_on_device(descriptor, device), _to_tensor(face), scale=int(descriptor.scale), tile=0,
                       overlap=0, requirements=descriptor.size_requirements, before_tile=hooks.raise_if_cancelled)
    restored = _to_image(output).resize(rgb.size, Image.Resampling.LANCZOS)
    if request.strength < 1.0:
        restored = Image.blend(rgb, restored, request.strength)
    hooks.progress(1, 1)
    return {"image": _write_png(_with_alpha(restored, alpha), request, "faces"),
            "architecture": descriptor.architecture.id}


def blur_radius_for(width: int, height: int) -> float:
    """Strong enough that nothing is recognisable: 1/16 of the longer side, at least 8 px."""
    return max(8.0, max(width, height) / 16)


def check_safety(request: PostprocessRequest, models: ModelCache, device: str, hooks: Hooks) -> dict[str, Any]:
    """``{nsfw, policy, action: passed|flagged|blurred|blocked, blocked, image}``."""
    import numpy as np
    import torch
    from PIL import ImageFilter

    assert request.model_path is not None
    checker = models.safety_checker(request.model_path, device, "modelPath")
    rgb, alpha = _load_rgb(request.image.path)
    clip_input = checker.processor([rgb], return_tensors="pt").pixel_values.to(device)
    with torch.inference_mode():
        # The checker blackens flagged images in the array it is given: a throwaway copy.
        _, flags = checker.model(clip_input=clip_input.to(checker.model.dtype), images=[np.asarray(rgb).copy()])
    nsfw = bool(flags[0])
    hooks.raise_if_cancelled()
    result: dict[str, Any] = {"nsfw": nsfw, "policy": request.policy, "blocked": False}
    if not nsfw:
        result.update(action="passed", image=describe_file(request.image.path))
    elif request.policy == "flag":
        result.update(action="flagged", image=describe_file(request.image.path))
    elif request.policy == "blur":
        radius = request.blur_radius or blur_radius_for(rgb.width, rgb.height)
        blurred = _with_alpha(rgb.filter(ImageFilter.GaussianBlur(radius)), alpha)
        result.update(action="blurred", image=_write_png(blurred, request, "safe"), blurRadius=radius)
    else:
        result.update(action="blocked", blocked=True, image=None)
    hooks.progress(1, 1)
    return result


def convert(request: PostprocessRequest, hooks: Hooks) -> dict[str, Any]:
    from PIL import Image

    with Image.open(request.image.path) as source:
        source.load()
        image = source.copy()
    fmt = request.format
    if fmt == "png":
        if image.mode not in ("RGB", "RGBA", "L", "LA"):
            image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        artifact = _write_png(image, request, "convert")
    else:
        quality = request.quality or DEFAULT_QUALITY[fmt]
        if fmt == "jpeg":
            image = _flatten(image)  # JPEG has no alpha: composite onto white rather than drop to black
        elif image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        buffer = io.BytesIO()
        image.save(buffer, format=PIL_FORMATS[fmt], quality=quality)
        artifact = write_bytes(buffer.getvalue(), request.output_dir, _name(request, "convert", fmt), image.size, fmt)
        artifact["quality"] = quality
    hooks.progress(1, 1)
    return {"image": artifact}


def describe_file(path: Path) -> dict[str, Any]:
    """An existing image file as an artifact (sha256 of its bytes)."""
    from PIL import Image

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with Image.open(path) as image:
        width, height = image.size
        fmt = (image.format or "").lower()
    return {"path": str(path), "sha256": digest, "width": width, "height": height, "format": fmt}


def write_bytes(data: bytes, directory: Path, name: str, size: tuple[int, int], fmt: str) -> dict[str, Any]:
    """``data`` as ``directory/name`` (owner-only, atomic: ``artifacts.write_artifact``)."""
    path = write_artifact(data, directory, name)
    return {"path": str(path), "sha256": hashlib.sha256(data).hexdigest(),
            "width": size[0], "height": size[1], "format": fmt}


def _name(request: PostprocessRequest, suffix: str, fmt: str = "png") -> str:
    # Unique per call: the same input may be processed twice with different parameters at once.
    return f"{request.image.path.stem}-{suffix}-{uuid.uuid4().hex[:12]}.{EXTENSIONS[fmt]}"


def _write_png(image: Any, request: PostprocessRequest, suffix: str) -> dict[str, Any]:
    return write_png(image, request.output_dir, _name(request, suffix), {})


def _load_rgb(path: Path) -> tuple[Any, Any]:
    """(RGB image, alpha band or None)."""
    from PIL import Image

    with Image.open(path) as source:
        source.load()
        image = source.copy()
    alpha = image.getchannel("A") if "A" in image.getbands() else None
    return image.convert("RGB"), alpha


def _with_alpha(image: Any, alpha: Any) -> Any:
    from PIL import Image

    if alpha is None:
        return image
    image = image.convert("RGBA")
    image.putalpha(alpha.resize(image.size, Image.Resampling.BICUBIC))
    return image


def _flatten(image: Any) -> Any:
    from PIL import Image

    if "A" not in image.getbands() and image.mode != "P":
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    background = Image.new("RGB", rgba.size, (255, 255, 255))
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def _to_tensor(image: Any) -> Any:
    import numpy as np
    import torch

    array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()


def _to_image(tensor: Any) -> Any:
    from PIL import Image

    array = (tensor[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255.0).round().astype("uint8")
    return Image.fromarray(array, "RGB")


def _on_device(descriptor: Any, device: str) -> Callable[[Any], Any]:
    def call(patch: Any) -> Any:
        return descriptor(patch.to(device))

    return call
