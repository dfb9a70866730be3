"""Run an image-to-image model over tiles and blend them back without seams.

Tiles overlap by ``overlap`` input pixels; inside an overlap each tile's weight ramps linearly
from ~0 at its inner edge to 1, edges on the image border keep weight 1, and the output is the
weighted mean. Tiles are padded (edge pixels repeated) to the model's size requirements and the
padding is cropped off its output.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def tile_origins(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets along one axis; the last tile ends exactly at ``length``."""
    if tile <= 0 or length <= tile:
        return [0]
    stride = tile - overlap
    origins = list(range(0, length - tile, stride))
    origins.append(length - tile)
    return origins


def tile_count(width: int, height: int, tile: int, overlap: int) -> int:
    return len(tile_origins(width, tile, overlap)) * len(tile_origins(height, tile, overlap))


def _ramp(length: int, ramp: int, start: bool, end: bool) -> Any:
    import torch

    weights = torch.ones(length)
    ramp = min(ramp, length // 2)
    if ramp > 0:
        rise = (torch.arange(ramp, dtype=torch.float32) + 0.5) / ramp
        if start:
            weights[:ramp] = rise
        if end:
            weights[length - ramp:] = rise.flip(0)
    return weights


def _pad_to(image: Any, requirements: Any) -> tuple[Any, int, int]:
    """``image`` (N,C,H,W) padded on the right/bottom to the model's size requirements."""
    import torch.nn.functional as F

    _, _, height, width = image.shape
    minimum = getattr(requirements, "minimum", 0) or 0
    multiple = getattr(requirements, "multiple_of", 1) or 1
    new_h = max(height, minimum)
    new_w = max(width, minimum)
    if getattr(requirements, "square", False):
        new_h = new_w = max(new_h, new_w)
    new_h = -(-new_h // multiple) * multiple
    new_w = -(-new_w // multiple) * multiple
    if (new_h, new_w) == (height, width):
        return image, height, width
    return F.pad(image, (0, new_w - width, 0, new_h - height), mode="replicate"), height, width


def run_tiled(model: Callable[[Any], Any], image: Any, *, scale: int, tile: int, overlap: int,
              requirements: Any = None, before_tile: Callable[[], None] = lambda: None,
              after_tile: Callable[[int, int], None] = lambda step, total: None) -> Any:
    """``model`` over ``image`` (1,C,H,W float) in tiles; returns (1,C,H*scale,W*scale).

    ``before_tile`` runs before each tile (raise there to cancel); ``after_tile(done, total)`` after each.
    """
    import torch

    _, channels, height, width = image.shape
    ys = tile_origins(height, tile, overlap)
    xs = tile_origins(width, tile, overlap)
    tile_h = height if len(ys) == 1 else tile
    tile_w = width if len(xs) == 1 else tile
    total = len(ys) * len(xs)
    out: Any = None
    weight = torch.zeros(1, 1, height * scale, width * scale)
    done = 0
    for y in ys:
        for x in xs:
            before_tile()
            patch, h, w = _pad_to(image[:, :, y:y + tile_h, x:x + tile_w], requirements)
            with torch.inference_mode():
                result = model(patch)[:, :, : h * scale, : w * scale].float().cpu()
            if out is None:
                out = torch.zeros(1, result.shape[1], height * scale, width * scale)
            mask = (_ramp(h * scale, overlap * scale, y > 0, y + h < height)[:, None]
                    * _ramp(w * scale, overlap * scale, x > 0, x + w < width)[None, :])[None, None]
            out[:, :, y * scale:(y + h) * scale, x * scale:(x + w) * scale] += result * mask
            weight[:, :, y * scale:(y + h) * scale, x * scale:(x + w) * scale] += mask
            done += 1
            after_tile(done, total)
    assert out is not None and channels > 0
    return out / weight
