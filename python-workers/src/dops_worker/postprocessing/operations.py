"""The four operations on a validated PostprocessRequest; each returns ``{image, ...extras}``.

``image`` is the artifact ``{path, sha256, width, height, format}`` written under the request's
output dir (PNG via the inference artifact writer, JPEG/WebP the same atomic way), or, for an
image that passes a safety check, the input file described the same way (unchanged: no copy just
to say it passed). A blocked image gets no artifact: ``image`` is None and ``blocked`` true.

Every written image carries its input's metadata plus one entry for what this operation did
(``metadata``): in ``dops.postprocessing``

- upscale: ``{operation, model, modelSha256, architecture, scale, tileSize, tileOverlap}``, and in
  the A1111 line ``Postprocess upscaler: <model file stem>, Postprocess upscale by: <scale>``;
- faceRestore: ``{operation, model, modelSha256, architecture, strength, faceSize}``, and
  ``Face restoration: <architecture>, <architecture> visibility: <strength>``;
- safety, flagged or blurred: ``{operation, model, modelSha256, policy, nsfw, action}`` (plus
  ``blurRadius``), and ``dops.safety = {nsfw: true, action}``. A flagged image is written again,
  pixels unchanged, as PNG (like a blurred one) so that the delivered file says it was flagged;
- convert: ``{operation, format}`` (plus ``quality`` for JPEG and WebP).

``model`` is the file's (a safety checker's: the folder's) name, ``modelSha256`` the sha256 of
that file (of the folder's model.safetensors).
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
from dops_worker.postprocessing.metadata import (
    JPEG_MAX_EXIF_BYTES,
    Metadata,
    appended,
    exif_of,
    metadata_of,
    png_text,
)
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
    source, metadata = _open(request.image.path)
    rgb, alpha = _split_alpha(source)
    total = tile_count(rgb.width, rgb.height, request.tile_size, request.tile_overlap)
    output = run_tiled(_on_device(descriptor, device), _to_tensor(rgb), scale=scale, tile=request.tile_size,
                       overlap=request.tile_overlap, requirements=descriptor.size_requirements,
                       before_tile=hooks.raise_if_cancelled, after_tile=hooks.progress)
    image = _with_alpha(_to_image(output), alpha)
    entry = {"operation": "upscale", **_model_fields(request.model_path, models),
             "architecture": descriptor.architecture.id, "scale": scale, "tileSize": request.tile_size,
             "tileOverlap": request.tile_overlap}
    infotext = [("Postprocess upscaler", request.model_path.stem), ("Postprocess upscale by", scale)]
    return {"image": _write_png(image, request, "upscale", appended(metadata, entry, infotext)), "scale": scale,
            "architecture": descriptor.architecture.id, "tiles": total}


def restore_faces(request: PostprocessRequest, models: ModelCache, device: str, hooks: Hooks) -> dict[str, Any]:
    """The whole image is taken as one aligned face crop (no face detection), restored at
    ``faceSize``², scaled back and mixed with the original by ``strength``."""
    from PIL import Image

    assert request.model_path is not None
    descriptor = models.image_model(request.model_path, device, "modelPath", face=True)
    source, metadata = _open(request.image.path)
    rgb, alpha = _split_alpha(source)
    face = rgb.resize((request.face_size, request.face_size), Image.Resampling.LANCZOS)
    output = run_tiled(_on_device(descriptor, device), _to_tensor(face), scale=int(descriptor.scale), tile=0,
                       overlap=0, requirements=descriptor.size_requirements, before_tile=hooks.raise_if_cancelled)
    restored = _to_image(output).resize(rgb.size, Image.Resampling.LANCZOS)
    if request.strength < 1.0:
        restored = Image.blend(rgb, restored, request.strength)
    hooks.progress(1, 1)
    architecture = descriptor.architecture.id
    entry = {"operation": "faceRestore", **_model_fields(request.model_path, models), "architecture": architecture,
             "strength": request.strength, "faceSize": request.face_size}
    # A1111's extras name the restorer's visibility after it ("GFPGAN visibility", "CodeFormer visibility").
    infotext = [("Face restoration", architecture), (f"{architecture} visibility", request.strength)]
    return {"image": _write_png(_with_alpha(restored, alpha), request, "faces", appended(metadata, entry, infotext)),
            "architecture": architecture}


def blur_radius_for(width: int, height: int) -> float:
    """Strong enough that nothing is recognisable: 1/16 of the longer side, at least 8 px."""
    return max(8.0, max(width, height) / 16)


def check_safety(request: PostprocessRequest, models: ModelCache, device: str, hooks: Hooks) -> dict[str, Any]:
    """``{nsfw, policy, action: passed|flagged|blurred|blocked, blocked, image}``; a passed image is
    the input file, a flagged one a copy that records the flag, a blurred one records it too."""
    import numpy as np
    import torch
    from PIL import ImageFilter

    assert request.model_path is not None
    checker = models.safety_checker(request.model_path, device, "modelPath")
    source, metadata = _open(request.image.path)
    rgb, alpha = _split_alpha(source)
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
        flagged = _recorded_safety(metadata, request, models, "flagged")
        result.update(action="flagged", image=_write_png(_png_mode(source), request, "flagged", flagged))
    elif request.policy == "blur":
        radius = request.blur_radius or blur_radius_for(rgb.width, rgb.height)
        blurred = _with_alpha(rgb.filter(ImageFilter.GaussianBlur(radius)), alpha)
        recorded = _recorded_safety(metadata, request, models, "blurred", blurRadius=radius)
        result.update(action="blurred", image=_write_png(blurred, request, "safe", recorded), blurRadius=radius)
    else:
        result.update(action="blocked", blocked=True, image=None)
    hooks.progress(1, 1)
    return result


def convert(request: PostprocessRequest, hooks: Hooks) -> dict[str, Any]:
    """Raises INVALID_ARGUMENT naming ``format`` when the metadata does not fit a JPEG's EXIF."""
    image, metadata = _open(request.image.path)
    fmt = request.format
    if fmt == "png":
        entry: dict[str, Any] = {"operation": "convert", "format": fmt}
        artifact = _write_png(_png_mode(image), request, "convert", appended(metadata, entry))
    else:
        quality = request.quality or DEFAULT_QUALITY[fmt]
        exif = exif_of(appended(metadata, {"operation": "convert", "format": fmt, "quality": quality}))
        if fmt == "jpeg":
            size = len(exif.tobytes())
            if size > JPEG_MAX_EXIF_BYTES:
                raise invalid("format", f"the image's metadata ({size} bytes of EXIF) does not fit in a JPEG "
                                        f"(at most {JPEG_MAX_EXIF_BYTES}); use png or webp")
            image = _flatten(image)  # JPEG has no alpha: composite onto white rather than drop to black
        elif image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        buffer = io.BytesIO()
        image.save(buffer, format=PIL_FORMATS[fmt], quality=quality, exif=exif)
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


def _write_png(image: Any, request: PostprocessRequest, suffix: str, metadata: Metadata) -> dict[str, Any]:
    return write_png(image, request.output_dir, _name(request, suffix), png_text(metadata))


def _model_fields(path: Path, models: ModelCache) -> dict[str, Any]:
    return {"model": path.name, "modelSha256": models.sha256(path)}


def _recorded_safety(metadata: Metadata, request: PostprocessRequest, models: ModelCache, action: str,
                     **extra: Any) -> Metadata:
    assert request.model_path is not None
    entry = {"operation": "safety", **_model_fields(request.model_path, models), "policy": request.policy,
             "nsfw": True, "action": action, **extra}
    return appended(metadata, entry, safety={"nsfw": True, "action": action})


def _open(path: Path) -> tuple[Any, Metadata]:
    """(the loaded image, its metadata: ``metadata.read_metadata``)."""
    from PIL import Image

    with Image.open(path) as source:
        source.load()
        return source.copy(), metadata_of(source)


def _split_alpha(image: Any) -> tuple[Any, Any]:
    """(RGB image, alpha band or None)."""
    alpha = image.getchannel("A") if "A" in image.getbands() else None
    return image.convert("RGB"), alpha


def _png_mode(image: Any) -> Any:
    if image.mode in ("RGB", "RGBA", "L", "LA"):
        return image
    return image.convert("RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB")


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
