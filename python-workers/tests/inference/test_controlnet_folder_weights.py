"""A diffusers ControlNet folder named by its weights file (what the model registry lists) loads
from the folder, offline: from_single_file would ask the hub for a config it cannot reach."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from dops_worker.inference.inputs import default_controlnet_loader

GENERATED = Path(__file__).resolve().parents[3] / "tools/fixtures/generated"
CONTROLNET = GENERATED / "controlnet-sd15-tiny"

pytestmark = pytest.mark.skipif(not CONTROLNET.is_dir(), reason="tools/fixtures/generated absent")


def _loader() -> object:
    pipe = SimpleNamespace(unet=SimpleNamespace(dtype=torch.float32))
    return default_controlnet_loader(pipe, torch.device("cpu"))


def test_the_weights_file_of_a_controlnet_folder_loads_the_folder() -> None:
    by_file = _loader()(CONTROLNET / "diffusion_pytorch_model.safetensors")
    by_folder = _loader()(CONTROLNET)
    assert type(by_file).__name__ == "ControlNetModel"
    for (name, a), (_, b) in zip(by_file.state_dict().items(), by_folder.state_dict().items()):
        assert torch.equal(a, b), name


def test_a_weights_file_without_a_controlnet_config_is_not_read_as_a_folder(tmp_path: Path) -> None:
    shutil.copy(CONTROLNET / "diffusion_pytorch_model.safetensors", tmp_path)
    (tmp_path / "config.json").write_text('{"_class_name": "UNet2DConditionModel"}', encoding="utf-8")
    with pytest.raises(Exception):  # from_single_file: no config reachable offline for these keys
        _loader()(tmp_path / "diffusion_pytorch_model.safetensors")
