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
        ({"prompt": "word " * 80}, INVALID, "prompt"),
        ({"negativePrompt": "word " * 80}, INVALID, "negativePrompt"),
        ({"prompt": None}, INVALID, "prompt"),
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
    request = make_request(sd15, roots, seed=-1, batchCount=3)
    assert request.seed_was_random and 0 <= request.seed < 2**32
    assert request.seeds() == [request.seed + i for i in range(3)]
    assert make_request(sd15, roots, seed=2**64 - 1, batchCount=2).seeds() == [2**64 - 1, 0]


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
