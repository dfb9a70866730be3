"""VAE decode (fp16 first, NaN guard, pixels on the device) and the PNG writer pool, on CPU."""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from dops_worker.inference.artifacts import write_image
from dops_worker.inference.decode import FP16_FAILED_ATTR, decode_latents, to_pil
from dops_worker.inference.png_writes import PngWrites


def _fp16_pipe(sdxl: Any) -> Any:
    """The tiny SDXL's VAE in fp16 (force_upcast, as SDXL's config says) beside its image processor."""
    vae = copy.deepcopy(sdxl.vae).to(torch.float16)
    assert vae.config.force_upcast
    return SimpleNamespace(vae=vae, image_processor=sdxl.image_processor)


def _record_decoder_dtypes(vae: Any, *, nan_in_fp16: bool = False) -> list[torch.dtype]:
    """The dtype of every decoder pass; with ``nan_in_fp16``, an fp16 pass outputs NaN (an overflow)."""
    seen: list[torch.dtype] = []

    def hook(_module: Any, _inputs: Any, output: torch.Tensor) -> torch.Tensor | None:
        seen.append(output.dtype)
        if nan_in_fp16 and output.dtype == torch.float16:
            return torch.full_like(output, float("nan"))
        return None

    vae.decoder.register_forward_hook(hook)
    return seen


def _latents(seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_pixels_made_on_the_device_equal_the_pipelines_postprocess(sdxl: Any, dtype: torch.dtype) -> None:
    # Values past [-1, 1] and on the rounding edges: the clamp and round-half-even must agree.
    decoded = (torch.rand(2, 3, 16, 24, generator=torch.Generator().manual_seed(1)) * 2.6 - 1.3).to(dtype)
    decoded[0, 0, 0, :4] = torch.tensor([-1.0, 1.0, 1 / 255 - 1, 0.5 / 255 * 2 - 1], dtype=dtype)
    ours = to_pil(sdxl, decoded)
    theirs = sdxl.image_processor.postprocess(decoded, output_type="pil")
    assert [np.asarray(a).tobytes() for a in ours] == [np.asarray(b).tobytes() for b in theirs]


def test_an_fp16_vae_decodes_in_fp16_and_stays_fp16(sdxl: Any) -> None:
    pipe = _fp16_pipe(sdxl)
    seen = _record_decoder_dtypes(pipe.vae)
    images = decode_latents(pipe, _latents(), "sdxl")
    assert seen == [torch.float16]  # no fp32 upcast
    assert len(images) == 2 and images[0].size == (16, 16)
    assert pipe.vae.dtype == torch.float16 and not getattr(pipe.vae, FP16_FAILED_ATTR, False)


def test_nan_in_the_fp16_decode_falls_back_to_fp32_and_is_remembered(sdxl: Any) -> None:
    pipe = _fp16_pipe(sdxl)
    seen = _record_decoder_dtypes(pipe.vae, nan_in_fp16=True)
    images = decode_latents(pipe, _latents(), "sdxl")
    assert seen == [torch.float16, torch.float32]
    # The fp32 result is the one returned: the NaN pass would have given black images.
    reference = copy.deepcopy(sdxl.vae).to(torch.float16).to(torch.float32)  # the same rounded weights
    expected = to_pil(pipe, _decode_fp32(reference, _latents()))
    assert [np.asarray(i).tobytes() for i in images] == [np.asarray(e).tobytes() for e in expected]
    assert pipe.vae.dtype == torch.float16  # restored for the UNet's neighbours
    assert getattr(pipe.vae, FP16_FAILED_ATTR) is True
    seen.clear()
    decode_latents(pipe, _latents(1), "sdxl")
    assert seen == [torch.float32]  # no second fp16 try for this VAE


def _decode_fp32(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    from dops_worker.inference.decode import _decode

    return _decode(vae, latents)


def test_sd15_and_fp32_vaes_decode_as_they_are(sd15: Any) -> None:
    pipe = SimpleNamespace(vae=copy.deepcopy(sd15.vae), image_processor=sd15.image_processor)
    seen = _record_decoder_dtypes(pipe.vae)
    decode_latents(pipe, _latents(), "sd15")
    assert seen == [torch.float32]


# ------------------------------------------------------------------------------------------------
# PNG writes on the pool
# ------------------------------------------------------------------------------------------------


def _images(count: int) -> list[Image.Image]:
    rng = np.random.default_rng(3)
    return [Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)) for _ in range(count)]


def test_pool_writes_are_the_bytes_of_a_write_alone_in_image_order(sd15: Any, roots: tuple[Path, Path],
                                                                  make_request: Any) -> None:
    images = _images(4)
    alone_request = make_request(sd15, roots, outputDir="alone", batchCount=4)
    pooled_request = make_request(sd15, roots, outputDir="pooled", batchCount=4)
    alone = [write_image(image, alone_request, 1 + i, i, f"img-{i}.png") for i, image in enumerate(images)]
    threads: list[str] = []
    writes = PngWrites()

    def pooled(i: int, image: Image.Image) -> dict[str, Any]:
        threads.append(threading.current_thread().name)
        return write_image(image, pooled_request, 1 + i, i, f"img-{i}.png")

    for i, image in reversed(list(enumerate(images))):  # submitted out of order on purpose
        writes.submit(i, lambda i=i, image=image: pooled(i, image))
    results = writes.results()
    assert [r["sha256"] for r in results] == [a["sha256"] for a in alone]
    for a, r in zip(alone, results):
        assert Path(a["path"]).read_bytes() == Path(r["path"]).read_bytes()
    assert all(name.startswith("png-writer") for name in threads)


def test_a_failed_write_raises_after_every_other_write_ended(sd15: Any, roots: tuple[Path, Path],
                                                             make_request: Any) -> None:
    request = make_request(sd15, roots, outputDir="partly")
    release = threading.Event()
    writes = PngWrites()

    def fails() -> dict[str, Any]:
        raise OSError("disk full")

    def slow() -> dict[str, Any]:
        release.wait(5)
        return write_image(_images(1)[0], request, 2, 1, "slow.png")

    writes.submit(0, fails)
    writes.submit(1, slow)
    threading.Timer(0.2, release.set).start()
    with pytest.raises(OSError, match="disk full"):
        writes.results()
    assert (roots[1] / "partly" / "slow.png").is_file()  # finished before the error surfaced


def test_generate_writes_every_image_of_a_batch_through_the_pool(sd15: Any, roots: tuple[Path, Path],
                                                                 make_request: Any) -> None:
    from dops_worker.inference.generate import GenerateHooks, generate

    result = generate(sd15, make_request(sd15, roots, batchCount=3, seed=11), device="cpu", hooks=GenerateHooks())
    assert [a["index"] for a in result["images"]] == [0, 1, 2] and result["seeds"] == [11, 12, 13]
    again = generate(sd15, make_request(sd15, roots, batchCount=1, seed=12), device="cpu", hooks=GenerateHooks())
    # Image 1 of the batch is seed 12's solo image to within one level (batch vs solo kernels on this CPU).
    with Image.open(result["images"][1]["path"]) as a, Image.open(again["images"][0]["path"]) as b:
        diff = np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16))
    assert diff.max() <= 1
