"""Every bad request fails with the right code and field before any denoising step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dops_worker.inference.generate import generate
from dops_worker.protocol.errors import ErrorCode, WorkerError

INVALID, PRECONDITION, NOT_FOUND = ErrorCode.INVALID_ARGUMENT, ErrorCode.FAILED_PRECONDITION, ErrorCode.NOT_FOUND


@pytest.fixture
def images(roots: tuple[Path, Path], write_image: Any) -> dict[str, str]:
    inputs = roots[0]
    write_image(inputs / "init.png", (64, 48))
    write_image(inputs / "mask.png", (64, 48), "L", 255)
    write_image(inputs / "small-mask.png", (32, 32), "L", 255)
    return {"init": "init.png", "mask": "mask.png", "small": "small-mask.png"}


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        ({"width": 60}, INVALID, "width"),
        ({"height": 50}, INVALID, "height"),
        ({"width": 4096}, INVALID, "width"),
        ({"steps": 0}, INVALID, "steps"),
        ({"steps": 1000}, INVALID, "steps"),
        ({"steps": 2.5}, INVALID, "steps"),
        ({"cfgScale": 31}, INVALID, "cfgScale"),
        ({"seed": -2}, INVALID, "seed"),
        ({"seed": 2**64}, INVALID, "seed"),
        ({"batchCount": 9}, INVALID, "batchCount"),
        ({"scheduler": "Heun++ 9M"}, INVALID, "scheduler"),
        ({"seed": -1}, INVALID, "seed"),
        ({"seed": "12a"}, INVALID, "seed"),
        ({"seed": "1.5"}, INVALID, "seed"),
        ({"steps": "2.5"}, INVALID, "steps"),
        ({"cfgScale": "NaN"}, INVALID, "cfgScale"),
        ({"prompt": "x" * 20_001}, INVALID, "prompt"),
        ({"negativePrompt": "x" * 20_001}, INVALID, "negativePrompt"),
        ({"prompt": 7}, INVALID, "prompt"),
        ({"clipSkip": 0}, INVALID, "clipSkip"),
        ({"clipSkip": 13}, INVALID, "clipSkip"),
        ({"clipSkip": 4}, INVALID, "clipSkip"),  # the tiny text encoder has 2 layers: 3 at most
        ({"clipSkip": 1.5}, INVALID, "clipSkip"),
        ({"batchCount": False}, INVALID, "batchCount"),
        ({"loras": [{"path": "/x.safetensors", "colour": 1}]}, INVALID, "loras[0].colour"),
        ({"controlnets": [{"path": "/x", "image": "init.png", "scale": 1}]}, INVALID, "controlnets[0].scale"),
        ({"mode": "outpaint"}, INVALID, "mode"),
        ({"colour": "red"}, INVALID, "colour"),
        ({"outputDir": "../escape"}, INVALID, "outputDir"),
        ({"mode": "img2img"}, INVALID, "initImage"),
        ({"mode": "img2img", "initImage": "init.png", "strength": 2}, INVALID, "strength"),
        ({"mode": "img2img", "initImage": "init.png", "strength": 0.1}, INVALID, "strength"),
        ({"mode": "img2img", "initImage": "missing.png"}, NOT_FOUND, "initImage"),
        ({"mode": "img2img", "initImage": "/etc/passwd"}, INVALID, "initImage"),
        ({"mode": "inpaint", "initImage": "init.png"}, INVALID, "mask"),
        ({"mode": "inpaint", "initImage": "init.png", "mask": "small-mask.png"}, INVALID, "mask"),
        ({"initImage": "init.png"}, INVALID, "initImage"),
        ({"loras": [{"path": "/nonexistent/x.safetensors", "weight": 1}]}, INVALID, "loras[0].path"),
        ({"controlnets": [{"path": "/nonexistent", "image": "init.png"}]}, INVALID, "controlnets[0].path"),
    ],
)
def test_bad_request_names_the_field(sd15: Any, roots: tuple[Path, Path], images: dict[str, str],
                                     fields: dict[str, Any], code: ErrorCode, field: str, make_request: Any) -> None:
    with pytest.raises(WorkerError) as caught:
        make_request(sd15, roots, **fields)
    assert caught.value.code is code, caught.value
    assert caught.value.details["field"] == field


def test_missing_model_files_inside_the_model_roots_are_not_found(sd15: Any, roots: tuple[Path, Path], tmp_path: Path,
                                                                 images: dict[str, str], make_request: Any) -> None:
    with pytest.raises(WorkerError) as caught:
        make_request(sd15, roots, loras=[{"path": str(tmp_path / "missing.safetensors")}])
    assert caught.value.code is NOT_FOUND and caught.value.details["field"] == "loras[0].path"
    with pytest.raises(WorkerError) as caught:
        make_request(sd15, roots, controlnets=[{"path": str(tmp_path / "missing-cn"), "image": "init.png"}])
    assert caught.value.code is NOT_FOUND and caught.value.details["field"] == "controlnets[0].path"


def test_lora_weight_out_of_range_and_pickle_rejected(sd15: Any, roots: tuple[Path, Path], tmp_path: Path,
                                                     make_request: Any) -> None:
    lora = tmp_path / "x.safetensors"
    lora.write_bytes(b"")
    with pytest.raises(WorkerError) as caught:
        make_request(sd15, roots, loras=[{"path": str(lora), "weight": 11}])
    assert caught.value.details["field"] == "loras[0].weight"
    pickle = tmp_path / "x.ckpt"
    pickle.write_bytes(b"")
    with pytest.raises(WorkerError) as caught:
        make_request(sd15, roots, loras=[{"path": str(pickle)}])
    assert caught.value.details["field"] == "loras[0].path"


def test_random_seed_is_drawn_and_reported(sd15: Any, roots: tuple[Path, Path], make_request: Any) -> None:
    request = make_request(sd15, roots, seed=None, batchCount=3)
    assert request.seed_was_random and 0 <= request.seed < 2**32
    assert request.seeds() == [request.seed + i for i in range(3)]
    assert make_request(sd15, roots, seed=2**64 - 1, batchCount=2).seeds() == [2**64 - 1, 0]


def test_proto3_defaults_mean_absent(sd15: Any, roots: tuple[Path, Path], make_request: Any) -> None:
    """What a protobuf library writes for an unset field ("" / 0 / false / [] / {}) is no field at all."""
    request = make_request(sd15, roots, mode="", scheduler="", batchCount=0, initImage="", mask="", loras=[],
                           controlnets=[], modelHashes={}, allowInpaintFallback=False, negativePrompt="")
    assert (request.mode, request.scheduler, request.batch_count) == ("txt2img", "Euler a", 1)
    assert request.init_image is None and request.loras == () and request.model_hashes == {}
    assert request.clip_skip == 1
    lora = {"path": "", "weight": None}
    with pytest.raises(WorkerError) as caught:
        make_request(sd15, roots, loras=[lora])
    assert caught.value.details["field"] == "loras[0].path"
    for empty in ("", None):
        with pytest.raises(WorkerError) as caught:
            make_request(sd15, roots, outputDir=empty, model="x")
        assert caught.value.details["field"] == "outputDir"


def test_absent_prompt_is_empty_and_integers_may_be_strings(sd15: Any, roots: tuple[Path, Path],
                                                            make_request: Any) -> None:
    from dops_worker.inference.pipelines import limits_for_pipeline
    from dops_worker.inference.request import parse_generate_request
    from dops_worker.protocol.files import Roots
    from dops_worker.runtime.settings import node_settings

    request = parse_generate_request(
        {"model": "tiny", "outputDir": "out", "seed": "18446744073709551615", "steps": "3", "width": 64.0,
         "cfgScale": "4.5", "clipSkip": "2"},
        limits=limits_for_pipeline(sd15), input_roots=Roots("in", (roots[0],)),
        artifact_roots=Roots("out", (roots[1],)), model_roots=node_settings().model_roots)
    assert request.prompt == "" and request.negative_prompt == ""
    assert (request.seed, request.steps, request.width, request.cfg_scale) == (2**64 - 1, 3, 64, 4.5)
    assert request.clip_skip == 2 and not request.seed_was_random
    assert make_request(sd15, roots, prompt="x" * 20_000).prompt == "x" * 20_000


def _forbid_denoising(monkeypatch: pytest.MonkeyPatch, pipe: Any) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the UNet ran")

    monkeypatch.setattr(pipe.unet, "forward", fail)


def test_inpaint_on_a_normal_model_is_a_precondition(sd15: Any, roots: tuple[Path, Path], images: dict[str, str],
                                                     monkeypatch: pytest.MonkeyPatch, make_request: Any) -> None:
    request = make_request(sd15, roots, mode="inpaint", initImage="init.png", mask="mask.png")
    _forbid_denoising(monkeypatch, sd15)
    with pytest.raises(WorkerError) as caught:
        generate(sd15, request, device="cpu")
    assert caught.value.code is PRECONDITION and caught.value.details["field"] == "mode"


def test_controlnet_of_another_base_is_a_precondition(sdxl: Any, sd15: Any, roots: tuple[Path, Path],
                                                      images: dict[str, str], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch, make_request: Any) -> None:
    import diffusers

    controlnet = diffusers.ControlNetModel.from_unet(sd15.unet, conditioning_embedding_out_channels=(8, 16))
    controlnet.save_pretrained(str(tmp_path / "cn-sd15"))
    request = make_request(sdxl, roots, controlnets=[{"path": str(tmp_path / "cn-sd15"), "image": "init.png"}])
    _forbid_denoising(monkeypatch, sdxl)
    with pytest.raises(WorkerError) as caught:
        generate(sdxl, request, device="cpu")
    assert caught.value.code is PRECONDITION
    assert caught.value.details["field"] == "controlnets[0].path"
