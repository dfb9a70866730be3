"""Generation on tiny CPU models: sizes, determinism, modes, schedulers, LoRA, cancel, OOM, PNG."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from dops_worker.inference.artifacts import read_metadata
from dops_worker.inference.generate import GenerateHooks, generate
from dops_worker.inference.request import SCHEDULER_NAMES
from dops_worker.protocol.errors import ErrorCode, WorkerError

GENERATED = Path(__file__).resolve().parents[3] / "tools/fixtures/generated"


def _pixels(result: dict[str, Any], index: int = 0) -> np.ndarray:
    with Image.open(result["images"][index]["path"]) as image:
        return np.asarray(image.convert("RGB"))


def _run(pipe: Any, request: Any, **hooks: Any) -> dict[str, Any]:
    return generate(pipe, request, device="cpu", hooks=GenerateHooks(**hooks))


@pytest.fixture
def inputs(roots: tuple[Path, Path], write_image: Any) -> None:
    write_image(roots[0] / "init.png", (80, 56))  # resized to the requested size
    mask = np.zeros((56, 80), dtype=np.uint8)
    mask[:, 40:] = 255
    Image.fromarray(mask, "L").save(roots[0] / "mask.png")


def test_txt2img_gives_the_requested_size(sd15: Any, roots: tuple[Path, Path], make_request: Any) -> None:
    result = _run(sd15, make_request(sd15, roots, width=64, height=48, batchCount=2))
    assert [(a["width"], a["height"]) for a in result["images"]] == [(64, 48), (64, 48)]
    assert result["seeds"] == [1, 2] and [a["seed"] for a in result["images"]] == [1, 2]
    assert _pixels(result).shape == (48, 64, 3)
    assert Path(result["images"][0]["path"]).parent == roots[1] / "out"


def test_same_seed_same_bytes_other_seed_differs(sd15: Any, roots: tuple[Path, Path], make_request: Any) -> None:
    first = _run(sd15, make_request(sd15, roots, seed=7))
    again = _run(sd15, make_request(sd15, roots, seed=7))
    other = _run(sd15, make_request(sd15, roots, seed=8))
    assert first["images"][0]["sha256"] == again["images"][0]["sha256"]
    assert Path(first["images"][0]["path"]).read_bytes() == Path(again["images"][0]["path"]).read_bytes()
    assert not np.array_equal(_pixels(first), _pixels(other))


@pytest.mark.parametrize(("model", "fields"), [
    ("sd15", {}),
    ("sd15", {"mode": "img2img", "initImage": "init.png", "strength": 0.5}),
    # The inpaint pipelines VAE-encode one init image with the first generator only; each image
    # gets its own copy, so that seed + 1 draws its encoding as it does alone (27 levels off before).
    ("sd15_inpaint", {"mode": "inpaint", "initImage": "init.png", "mask": "mask.png"}),
    ("sd15", {"mode": "inpaint", "initImage": "init.png", "mask": "mask.png", "allowInpaintFallback": True}),
])
def test_batch_image_equals_single_run_of_its_seed(model: str, fields: dict[str, Any], request: pytest.FixtureRequest,
                                                   roots: tuple[Path, Path], inputs: None, make_request: Any) -> None:
    pipe = request.getfixturevalue(model)
    batch = _run(pipe, make_request(pipe, roots, seed=10, batchCount=2, **fields))
    single = _run(pipe, make_request(pipe, roots, seed=11, **fields))
    # Within 1: the CPU's kernels sum in another order for another batch size (test_inference_members.py).
    assert np.abs(_pixels(batch, 1).astype(int) - _pixels(single).astype(int)).max() <= 1


def test_img2img_and_inpaint_sizes(sd15: Any, sd15_inpaint: Any, roots: tuple[Path, Path], inputs: None,
                                   make_request: Any) -> None:
    img2img = _run(sd15, make_request(sd15, roots, mode="img2img", initImage="init.png", strength=0.5))
    assert (img2img["images"][0]["width"], img2img["images"][0]["height"]) == (64, 48)
    inpaint = _run(sd15_inpaint, make_request(sd15_inpaint, roots, mode="inpaint", initImage="init.png",
                                              mask="mask.png"))
    assert _pixels(inpaint).shape == (48, 64, 3)
    fallback = _run(sd15, make_request(sd15, roots, mode="inpaint", initImage="init.png", mask="mask.png",
                                       allowInpaintFallback=True))
    assert _pixels(fallback).shape == (48, 64, 3)


@pytest.mark.parametrize("scheduler", SCHEDULER_NAMES)
def test_every_scheduler_runs_two_steps(sd15: Any, roots: tuple[Path, Path], scheduler: str,
                                        make_request: Any) -> None:
    steps: list[tuple[int, int]] = []
    result = _run(sd15, make_request(sd15, roots, scheduler=scheduler),
                  progress=lambda step, total, preview=None: steps.append((step, total)))
    assert steps == [(1, 2), (2, 2)]
    assert np.isfinite(_pixels(result)).all()


def test_sdxl_txt2img_and_img2img(sdxl: Any, roots: tuple[Path, Path], inputs: None, make_request: Any) -> None:
    first = _run(sdxl, make_request(sdxl, roots, seed=3))
    again = _run(sdxl, make_request(sdxl, roots, seed=3))
    assert _pixels(first).shape == (48, 64, 3)
    assert first["images"][0]["sha256"] == again["images"][0]["sha256"]
    img2img = _run(sdxl, make_request(sdxl, roots, mode="img2img", initImage="init.png", strength=0.5))
    assert _pixels(img2img).shape == (48, 64, 3)


def test_lora_weight_zero_is_no_lora_and_is_removed_after(sd15: Any, sd15_lora: Path, roots: tuple[Path, Path],
                                                          make_request: Any) -> None:
    plain = _pixels(_run(sd15, make_request(sd15, roots)))
    at_zero = _pixels(_run(sd15, make_request(sd15, roots, loras=[{"path": str(sd15_lora), "weight": 0}])))
    at_one = _pixels(_run(sd15, make_request(sd15, roots, loras=[{"path": str(sd15_lora), "weight": 1}])))
    after = _pixels(_run(sd15, make_request(sd15, roots)))
    assert np.array_equal(plain, at_zero)
    assert not np.array_equal(plain, at_one)
    assert np.array_equal(plain, after)
    assert not any("lora" in name for name, _ in sd15.unet.named_modules())


@pytest.mark.skipif(not (GENERATED / "sd15-tiny-diffusers").is_dir(), reason="tools/fixtures/generated absent")
@pytest.mark.parametrize("style", ["kohya", "peft"])
def test_generated_loras_of_both_key_styles(style: str, roots: tuple[Path, Path], make_request: Any) -> None:
    import diffusers

    pipe = diffusers.StableDiffusionPipeline.from_pretrained(
        str(GENERATED / "sd15-tiny-diffusers"), local_files_only=True, dtype=torch.float32)
    lora = GENERATED / f"lora-{style}-sd15-tiny.safetensors"
    plain = _pixels(_run(pipe, make_request(pipe, roots)))
    with_lora = _pixels(_run(pipe, make_request(pipe, roots, loras=[{"path": str(lora), "weight": 1}])))
    assert not np.array_equal(plain, with_lora)
    assert np.array_equal(plain, _pixels(_run(pipe, make_request(pipe, roots))))


def test_controlnet_single_and_multi(sd15: Any, roots: tuple[Path, Path], inputs: None, tmp_path: Path,
                                     make_request: Any) -> None:
    import diffusers

    torch.manual_seed(2)
    controlnet = diffusers.ControlNetModel.from_unet(sd15.unet, conditioning_embedding_out_channels=(8, 16))
    controlnet.save_pretrained(str(tmp_path / "cn"))
    spec = {"path": str(tmp_path / "cn"), "image": "init.png", "conditioningScale": 0.8}
    single = _run(sd15, make_request(sd15, roots, controlnets=[spec]))
    multi = _run(sd15, make_request(sd15, roots, mode="img2img", initImage="init.png", controlnets=[spec, spec]))
    assert _pixels(single).shape == _pixels(multi).shape == (48, 64, 3)


def test_cancel_after_step_one_then_next_run_succeeds(sd15: Any, roots: tuple[Path, Path],
                                                      make_request: Any) -> None:
    seen: list[int] = []
    request = make_request(sd15, roots, steps=4)
    with pytest.raises(WorkerError) as caught:
        _run(sd15, request, progress=lambda step, total, preview=None: seen.append(step),
             raise_if_cancelled=GenerateHooks.cancel_check(lambda: bool(seen)))
    assert caught.value.code is ErrorCode.CANCELLED
    assert seen == [1]
    assert len(_run(sd15, make_request(sd15, roots))["images"]) == 1


def test_a_cancelled_run_defers_its_memory_release_until_after_the_reply(
        sd15: Any, roots: tuple[Path, Path], make_request: Any) -> None:
    seen: list[int] = []
    released: list[str] = []
    deferred: list[Any] = []
    with pytest.raises(WorkerError) as caught:
        _run(sd15, make_request(sd15, roots, steps=4), progress=lambda step, total, preview=None: seen.append(step),
             raise_if_cancelled=GenerateHooks.cancel_check(lambda: bool(seen)),
             release_memory=lambda: released.append("released"), defer=deferred.append)
    assert caught.value.code is ErrorCode.CANCELLED
    assert released == []  # not yet: the CANCELLED reply goes first
    assert len(deferred) == 1
    deferred[0]()
    assert released == ["released"]


def test_previews_are_throttled_and_written(sd15: Any, roots: tuple[Path, Path], make_request: Any) -> None:
    previews: list[dict[str, Any]] = []

    def progress(step: int, total: int, preview: dict[str, Any] | None = None) -> None:
        if preview:
            previews.append(preview)

    _run(sd15, make_request(sd15, roots, steps=4, previewIntervalS=0), progress=progress)
    assert [p["step"] for p in previews] == [1, 2, 3]  # none for the last step: the image follows
    assert Image.open(previews[0]["path"]).size == (previews[0]["width"], previews[0]["height"])
    previews.clear()
    _run(sd15, make_request(sd15, roots, steps=4, previewIntervalS=3600), progress=progress)
    assert previews == []


def test_png_chunks_round_trip_parameters_and_seed(sd15: Any, roots: tuple[Path, Path], make_request: Any) -> None:
    request = make_request(sd15, roots, prompt="a café, blue", negativePrompt="blurry", seed=None,
                           modelHashes={"sha256": "ab" * 32})
    result = _run(sd15, request)
    text = read_metadata(Path(result["images"][0]["path"]))
    dops = json.loads(text["dops"])
    assert dops["seed"] == result["seed"] == request.seed and dops["seedWasRandom"] is True
    assert dops["prompt"] == "a café, blue" and dops["negativePrompt"] == "blurry"
    assert dops["steps"] == 2 and dops["scheduler"] == "Euler" and dops["width"] == 64
    assert dops["modelHashes"] == {"sha256": "ab" * 32}
    assert text["parameters"].startswith("a café, blue\nNegative prompt: blurry\nSteps: 2, Sampler: Euler")
    assert f"Seed: {request.seed}" in text["parameters"] and "Model hash: abababab" in text["parameters"]


@pytest.mark.parametrize("model", ["sd15", "sdxl"])
def test_a_long_prompt_generates_and_its_tail_changes_the_image(model: str, request: pytest.FixtureRequest,
                                                                roots: tuple[Path, Path], make_request: Any,
                                                                prompt_of_tokens: Any) -> None:
    pipe = request.getfixturevalue(model)
    head = prompt_of_tokens(75)
    whole = _pixels(_run(pipe, make_request(pipe, roots, prompt=f"{head} {prompt_of_tokens(125, offset=5)}",
                                            negativePrompt="blurry")))
    head_only = _pixels(_run(pipe, make_request(pipe, roots, prompt=head, negativePrompt="blurry")))
    assert whole.shape == head_only.shape == (48, 64, 3)
    assert not np.array_equal(whole, head_only)


def _controlnet(pipe: Any, directory: Path) -> str:
    import diffusers

    torch.manual_seed(2)
    diffusers.ControlNetModel.from_unet(pipe.unet, conditioning_embedding_out_channels=(8, 16)).save_pretrained(
        str(directory))
    return str(directory)


@pytest.mark.parametrize("model", ["sd15", "sdxl"])
@pytest.mark.parametrize("mode", ["txt2img", "img2img", "inpaint", "controlnet", "controlnet-img2img"])
def test_long_weighted_prompts_in_every_pipeline(model: str, mode: str, request: pytest.FixtureRequest,
                                                 roots: tuple[Path, Path], inputs: None, tmp_path: Path,
                                                 make_request: Any, prompt_of_tokens: Any) -> None:
    pipe = request.getfixturevalue(model)
    fields: dict[str, Any] = {"negativePrompt": f"[{prompt_of_tokens(90)}]"}
    if mode in ("img2img", "controlnet-img2img"):
        fields.update(mode="img2img", initImage="init.png", strength=0.5)
    elif mode == "inpaint":
        fields.update(mode="inpaint", initImage="init.png", mask="mask.png", allowInpaintFallback=True)
    if mode.startswith("controlnet"):
        fields["controlnets"] = [{"path": _controlnet(pipe, tmp_path / "cn"), "image": "init.png"}]
    long = prompt_of_tokens(150)
    weighted = _pixels(_run(pipe, make_request(pipe, roots, prompt=f"(cat:1.5) {long}", **fields)))
    plain = _pixels(_run(pipe, make_request(pipe, roots, prompt=f"cat {long}", **fields)))
    assert weighted.shape == (48, 64, 3)
    assert not np.array_equal(weighted, plain)


def test_clip_skip_changes_the_image_and_is_recorded(sd15: Any, roots: tuple[Path, Path], make_request: Any) -> None:
    plain = _run(sd15, make_request(sd15, roots, seed=4))
    skipped = _run(sd15, make_request(sd15, roots, seed=4, clipSkip=2))
    assert not np.array_equal(_pixels(plain), _pixels(skipped))
    text = read_metadata(Path(skipped["images"][0]["path"]))
    assert json.loads(text["dops"])["clipSkip"] == 2
    assert ", Model: tiny, Clip skip: 2" in text["parameters"]
    plain_text = read_metadata(Path(plain["images"][0]["path"]))
    assert json.loads(plain_text["dops"])["clipSkip"] == 1 and "Clip skip" not in plain_text["parameters"]
    with pytest.raises(WorkerError) as caught:
        make_request(sd15, roots, clipSkip=13)
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT and caught.value.details["field"] == "clipSkip"


def test_a_text_encoder_lora_changes_the_image(sd15: Any, sd15_text_encoder_lora: Path, roots: tuple[Path, Path],
                                               make_request: Any) -> None:
    plain = _pixels(_run(sd15, make_request(sd15, roots)))
    with_lora = _pixels(_run(sd15, make_request(sd15, roots, loras=[{"path": str(sd15_text_encoder_lora)}])))
    assert not np.array_equal(plain, with_lora)
    assert np.array_equal(plain, _pixels(_run(sd15, make_request(sd15, roots))))


def test_lora_hashes_are_in_both_metadata_chunks(sd15: Any, sd15_lora: Path, roots: tuple[Path, Path],
                                                 make_request: Any) -> None:
    import hashlib

    result = _run(sd15, make_request(sd15, roots, loras=[{"path": str(sd15_lora), "weight": 0.5}]))
    text = read_metadata(Path(result["images"][0]["path"]))
    sha256 = hashlib.sha256(sd15_lora.read_bytes()).hexdigest()
    assert text["parameters"].endswith(
        f'Size: 64x48, Model: tiny, Lora hashes: "tiny-lora: {sha256[:10]}", Lora weights: "tiny-lora: 0.5"')
    dops = json.loads(text["dops"])
    assert dops["loras"] == [{"path": str(sd15_lora), "weight": 0.5, "sha256": sha256}]


def _oom_decode(monkeypatch: pytest.MonkeyPatch, vae: Any, failures: int) -> list[bool]:
    calls: list[bool] = []
    real = vae.decode

    def decode(*args: Any, **kwargs: Any) -> Any:
        calls.append(bool(getattr(vae, "use_tiling", False)))
        if len(calls) <= failures:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(*args, **kwargs)

    monkeypatch.setattr(vae, "decode", decode)
    return calls


def test_oom_in_decode_retries_with_tiling(sd15: Any, roots: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
                                           make_request: Any) -> None:
    calls = _oom_decode(monkeypatch, sd15.vae, failures=1)
    result = _run(sd15, make_request(sd15, roots))
    assert result["oomMitigations"] == ["vae_tiling"] and calls == [False, True]
    assert _pixels(result).shape == (48, 64, 3)
    assert sd15.vae.use_tiling is False  # undone for the next request


def test_oom_every_time_is_out_of_memory_with_the_steps_tried(sd15: Any, roots: tuple[Path, Path],
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              make_request: Any) -> None:
    _oom_decode(monkeypatch, sd15.vae, failures=10**6)
    with pytest.raises(WorkerError) as caught:
        _run(sd15, make_request(sd15, roots, batchCount=2))
    assert caught.value.code is ErrorCode.OUT_OF_MEMORY and caught.value.retryable
    # model_cpu_offload does not apply on the CPU device.
    assert caught.value.details["tried"] == ["vae_tiling", "smaller_batch"]
    monkeypatch.undo()
    assert len(_run(sd15, make_request(sd15, roots))["images"]) == 1
