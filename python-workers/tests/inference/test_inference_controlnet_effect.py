"""The generated ControlNet fixture changes pixels, through the worker's own generate path.

tools/fixtures/generate.py fills the ControlNet's zero convolutions with seeded values, so the
tiny ControlNet acts like a trained one: it moves the image, its control image matters, and its
conditioning scale does (at 0 it is off). Measured on the generated fixtures (sd15-tiny-diffusers
+ controlnet-sd15-tiny, 64×48, 2 Euler steps, seed 1, CPU), as the mean absolute difference of
8-bit RGB pixels: ControlNet at scale 1 vs none 9.70; left-half vs right-half control image 1.27;
scale 0 vs none 0 (bit-identical). With the old all-zero convolutions the first two were 0 too.
The thresholds (4.0 and 0.5) sit well under the measured values and far above rounding noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from dops_worker.inference.generate import GenerateHooks, generate

GENERATED = Path(__file__).resolve().parents[3] / "tools/fixtures/generated"
CONTROLNET = GENERATED / "controlnet-sd15-tiny"
PIPELINE = GENERATED / "sd15-tiny-diffusers"  # the weights controlnet-sd15-tiny pairs with

pytestmark = pytest.mark.skipif(not (CONTROLNET.is_dir() and PIPELINE.is_dir()),
                                reason="tools/fixtures/generated absent")


def _pixels(result: dict[str, Any]) -> np.ndarray:
    with Image.open(result["images"][0]["path"]) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float64)


def _mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


@pytest.fixture(scope="module")
def pipe() -> Any:
    import diffusers

    pipeline = diffusers.StableDiffusionPipeline.from_pretrained(str(PIPELINE), local_files_only=True,
                                                                 dtype=torch.float32)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture
def hints(roots: tuple[Path, Path]) -> tuple[str, str]:
    """Two edge-map-like control images: the left half white, or the right half."""
    for name, columns in (("hint-left.png", slice(0, 32)), ("hint-right.png", slice(32, 64))):
        pixels = np.zeros((48, 64, 3), dtype=np.uint8)
        pixels[:, columns] = 255
        Image.fromarray(pixels, "RGB").save(roots[0] / name)
    return "hint-left.png", "hint-right.png"


def test_the_generated_controlnet_changes_pixels_and_scale_zero_turns_it_off(
        pipe: Any, roots: tuple[Path, Path], hints: tuple[str, str], make_request: Any) -> None:
    def run(*controlnets: dict[str, Any]) -> np.ndarray:
        request = make_request(pipe, roots, controlnets=list(controlnets) or None)
        return _pixels(generate(pipe, request, device="cpu", hooks=GenerateHooks()))

    def control(image: str, scale: float) -> dict[str, Any]:
        return {"path": str(CONTROLNET), "image": image, "conditioningScale": scale}

    hint_a, hint_b = hints
    off = run()
    on_a = run(control(hint_a, 1.0))
    on_b = run(control(hint_b, 1.0))
    zero_a = run(control(hint_a, 0.0))
    zero_b = run(control(hint_b, 0.0))
    assert _mean_abs_diff(on_a, off) > 4.0, "the ControlNet at scale 1 must move the image"
    assert _mean_abs_diff(on_a, on_b) > 0.5, "the control image must matter"
    assert np.array_equal(zero_a, off), "at conditioning scale 0 the ControlNet is off"
    assert np.array_equal(zero_a, zero_b)
