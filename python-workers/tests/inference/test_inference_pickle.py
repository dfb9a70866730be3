"""No pickle runs code through a generation's LoRAs or ControlNets, with the node's pickle setting
off and on: requests admit only safetensors files and safetensors-only folders, and the loaders
behind them never hand a pickle to torch or diffusers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dops_worker.inference.request import LoraSpec
from dops_worker.protocol.errors import ErrorCode, WorkerError

PICKLE_SETTING = pytest.mark.parametrize("pickle_allowed", [False, True], ids=["pickle-off", "pickle-on"])


@pytest.fixture
def init_image(roots: tuple[Path, Path], write_image: Any) -> str:
    write_image(roots[0] / "init.png", (64, 48))
    return "init.png"


def _hostile_controlnet(folder: Path, hostile_pickle: Any) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel"}))
    hostile_pickle(folder / "diffusion_pytorch_model.bin")
    return folder


@PICKLE_SETTING
@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".bin"])
def test_a_pickle_lora_is_refused_by_the_request(sd15, roots, make_request, node, hostile_pickle, pickle_marker,
                                                 torch_loads, tmp_path, pickle_allowed, suffix) -> None:
    node(allow_unsafe_pickle=pickle_allowed)
    path = hostile_pickle(tmp_path / f"lora{suffix}")
    with pytest.raises(WorkerError) as caught:
        make_request(sd15, roots, loras=[{"path": str(path)}])
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT and caught.value.details["field"] == "loras[0].path"
    assert torch_loads == [] and not pickle_marker.exists()


@PICKLE_SETTING
def test_the_lora_loader_itself_never_unpickles(sd15, node, hostile_pickle, pickle_marker, torch_loads, tmp_path,
                                                pickle_allowed) -> None:
    """Behind the request's check: a pickle (or one named .safetensors) reaching the loader."""
    from dops_worker.inference.lora import applied_loras

    node(allow_unsafe_pickle=pickle_allowed)
    for path in (hostile_pickle(tmp_path / "lora.ckpt"), hostile_pickle(tmp_path / "disguised.safetensors")):
        with pytest.raises(WorkerError) as caught, applied_loras(sd15, [LoraSpec(path, 1.0)]):
            pass
        assert caught.value.details["field"] == "loras[0].path"
    assert all(call.get("weights_only") is True for call in torch_loads)
    assert not pickle_marker.exists()
    assert not sd15.get_list_adapters()


@PICKLE_SETTING
def test_a_controlnet_folder_with_pickle_weights_only_is_refused_by_the_request(
        sd15, roots, make_request, node, init_image, hostile_pickle, pickle_marker, torch_loads, tmp_path,
        pickle_allowed) -> None:
    node(allow_unsafe_pickle=pickle_allowed)
    folder = _hostile_controlnet(tmp_path / "cn", hostile_pickle)
    single = hostile_pickle(tmp_path / "cn.pth", legacy=True)
    for path, code in ((folder, ErrorCode.FAILED_PRECONDITION), (single, ErrorCode.INVALID_ARGUMENT)):
        with pytest.raises(WorkerError) as caught:
            make_request(sd15, roots, controlnets=[{"path": str(path), "image": init_image}])
        assert caught.value.code is code and caught.value.details["field"] == "controlnets[0].path"
    assert torch_loads == [] and not pickle_marker.exists()


@PICKLE_SETTING
def test_the_controlnet_loader_itself_never_unpickles(sd15, node, hostile_pickle, pickle_marker, torch_loads,
                                                      tmp_path, pickle_allowed) -> None:
    from dops_worker.inference.inputs import default_controlnet_loader

    node(allow_unsafe_pickle=pickle_allowed)
    load = default_controlnet_loader(sd15, "cpu")
    for path in (_hostile_controlnet(tmp_path / "cn", hostile_pickle), hostile_pickle(tmp_path / "cn.pth")):
        with pytest.raises(Exception):  # noqa: B017, PT011 - diffusers' error or ours; what matters is below
            load(path)
    assert torch_loads == [] and not pickle_marker.exists()
