"""No pickle runs code through upscalers, face restorers or safety checkers, with the node's pickle
setting off (pickle refused before reading) and on (read weights-only, never by spandrel's own
loader); safety checker folders load safetensors only."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from dops_worker.protocol.errors import ErrorCode, WorkerError
from dops_worker.runtime.registry import registry

from .conftest import FACE, FLAGS_ALL, UPSCALER, context, noise_image

PICKLE_SETTING = pytest.mark.parametrize("pickle_allowed", [False, True], ids=["pickle-off", "pickle-on"])


@pytest.fixture
def run(roots: tuple[Path, Path], node: Any) -> Any:
    import dops_worker.runtime.methods  # noqa: F401 - registers postprocess.run

    node(input_root=roots[0], artifact_root=roots[1])
    image = noise_image(roots[0] / "in.png", 16, 16)

    def call(**params: Any) -> dict[str, Any]:
        return registry.get("postprocess.run").handler({"outputDir": "out", "image": str(image), **params},
                                                      context([]))

    return call


def _refused(call: Any, **params: Any) -> WorkerError:
    with pytest.raises(WorkerError) as caught:
        call(**params)
    return caught.value


@PICKLE_SETTING
@pytest.mark.parametrize("operation", ["upscale", "faceRestore"])
@pytest.mark.parametrize("suffix", [".pth", ".pt", ".ckpt"])
def test_a_hostile_spandrel_model_never_runs(run, node, hostile_pickle, pickle_marker, torch_loads, tmp_path,
                                             pickle_allowed, operation, suffix) -> None:
    node(allow_unsafe_pickle=pickle_allowed)
    path = hostile_pickle(tmp_path / f"model{suffix}", legacy=suffix == ".pth")
    error = _refused(run, operation=operation, modelPath=str(path))
    assert error.details["field"] == "modelPath"
    if pickle_allowed:
        assert error.code is ErrorCode.INVALID_ARGUMENT and "weights-only" in error.message
        assert torch_loads and all(call.get("weights_only") is True for call in torch_loads)
    else:
        assert error.code is ErrorCode.FAILED_PRECONDITION and error.details["setting"] == "DOPS_ALLOW_UNSAFE_PICKLE"
        assert torch_loads == []
    assert not pickle_marker.exists()


@pytest.mark.parametrize(("name", "operation"), [(UPSCALER, "upscale"), (FACE, "faceRestore")])
def test_a_plain_pth_loads_where_the_node_allows_pickle(run, node, models, torch_loads, tmp_path, name,
                                                        operation) -> None:
    import torch
    from safetensors.torch import load_file

    path = tmp_path / Path(name).with_suffix(".pth").name
    torch.save(load_file(str(models / name)), path)
    assert _refused(run, operation=operation, modelPath=str(path)).code is ErrorCode.FAILED_PRECONDITION
    node(allow_unsafe_pickle=True)
    result = run(operation=operation, modelPath=str(path), **({"faceSize": 64} if operation == "faceRestore" else {}))
    assert result["image"]["path"]
    assert [call.get("weights_only") for call in torch_loads] == [True]


@PICKLE_SETTING
def test_the_spandrel_loader_itself_never_unpickles(node, hostile_pickle, pickle_marker, torch_loads, tmp_path,
                                                    pickle_allowed) -> None:
    from dops_worker.postprocessing.models import _load_image_model

    node(allow_unsafe_pickle=pickle_allowed)
    with pytest.raises(WorkerError):
        _load_image_model(hostile_pickle(tmp_path / "model.pt"), "cpu", "modelPath")
    assert all(call.get("weights_only") is True for call in torch_loads)
    assert not pickle_marker.exists()


@PICKLE_SETTING
def test_a_safety_checker_loads_its_safetensors_never_the_pickle_beside_them(
        run, node, models, hostile_pickle, pickle_marker, torch_loads, tmp_path, pickle_allowed) -> None:
    node(allow_unsafe_pickle=pickle_allowed)
    both = tmp_path / "both"
    shutil.copytree(models / FLAGS_ALL, both)
    hostile_pickle(both / "pytorch_model.bin")
    assert run(operation="safety", modelPath=str(both))["nsfw"] is True
    only_pickle = tmp_path / "only-pickle"
    shutil.copytree(models / FLAGS_ALL, only_pickle)
    (only_pickle / "model.safetensors").unlink()
    hostile_pickle(only_pickle / "pytorch_model.bin")
    assert _refused(run, operation="safety", modelPath=str(only_pickle)).details["field"] == "modelPath"
    assert torch_loads == [] and not pickle_marker.exists()


def test_the_safety_checker_loader_itself_never_unpickles(models, hostile_pickle, pickle_marker, torch_loads,
                                                          tmp_path) -> None:
    from dops_worker.postprocessing.models import _load_safety_checker

    folder = tmp_path / "only-pickle"
    shutil.copytree(models / FLAGS_ALL, folder)
    (folder / "model.safetensors").unlink()
    hostile_pickle(folder / "pytorch_model.bin")
    with pytest.raises(WorkerError):
        _load_safety_checker(folder, "cpu", "modelPath")
    assert torch_loads == [] and not pickle_marker.exists()
