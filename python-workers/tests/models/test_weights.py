"""No pickle runs code in the worker: a hostile .ckpt/.bin through model.load and the loader, with
the node's pickle setting off (refused before reading) and on (torch.load weights_only=True
refuses it); diffusers folders holding pickle weights only are refused before anything loads."""

from __future__ import annotations

import shutil
from typing import Any

import pytest
import torch

from dops_worker.models.weights import read_weights
from dops_worker.protocol.errors import ErrorCode, WorkerError
from dops_worker.runtime.cancellation import CancelToken
from dops_worker.runtime.context import RequestContext

PICKLE_SETTING = pytest.mark.parametrize("pickle_allowed", [False, True], ids=["pickle-off", "pickle-on"])


class _Backend:
    torch_device = "cpu"

    def device(self) -> dict[str, Any]:
        return {"capabilities": {"fp16": False}}


class _Session:
    backend = _Backend()


def _ctx() -> RequestContext:
    return RequestContext(request_id=1, method="model.load", token=CancelToken(), session=_Session(),  # type: ignore[arg-type]
                          notify=lambda name, params: None, status=dict)


@pytest.fixture
def model_load(monkeypatch: pytest.MonkeyPatch) -> Any:
    from dops_worker.models import methods

    monkeypatch.setattr(methods, "_models", methods._Models())

    def call(**params: Any) -> Any:
        return methods.load({"modelId": "m", **params}, _ctx())

    return call


def _refused(call: Any, *args: Any, **kwargs: Any) -> WorkerError:
    with pytest.raises(WorkerError) as caught:
        call(*args, **kwargs)
    return caught.value


@pytest.mark.parametrize("legacy", [False, True], ids=["torch.save", "bare-pickle"])
def test_the_hostile_pickle_runs_code_when_loaded_unsafely(hostile_pickle, pickle_marker, tmp_path, legacy) -> None:
    """The payload is live: what every other test here shows is the worker not running it."""
    path = hostile_pickle(tmp_path / "x.ckpt", legacy=legacy)
    try:
        torch.load(path, weights_only=False)["state_dict"]["weight"].close()
    except Exception:  # noqa: BLE001 - a bare pickle is no torch file: torch fails, after its code ran
        pass
    assert pickle_marker.exists()


@PICKLE_SETTING
@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".pth", ".bin"])
def test_model_load_of_a_hostile_pickle_never_runs_it(model_load, node, hostile_pickle, pickle_marker, torch_loads,
                                                      tmp_path, pickle_allowed, suffix) -> None:
    node(allow_unsafe_pickle=pickle_allowed)
    path = hostile_pickle(tmp_path / f"model{suffix}", legacy=suffix == ".pth")
    error = _refused(model_load, path=str(path))
    if pickle_allowed:
        assert error.code is ErrorCode.INVALID_ARGUMENT and "weights-only" in error.message
        assert torch_loads and all(call.get("weights_only") is True for call in torch_loads)
    else:
        assert error.code is ErrorCode.FAILED_PRECONDITION
        assert error.details["setting"] == "DOPS_ALLOW_UNSAFE_PICKLE"
        assert torch_loads == []  # refused before the file is opened
    assert error.details["field"] == "path"
    assert not pickle_marker.exists()


@PICKLE_SETTING
def test_a_diffusers_folder_with_pickle_weights_only_is_refused_before_loading(
        model_load, node, fixtures_dir, hostile_pickle, pickle_marker, torch_loads, tmp_path, pickle_allowed) -> None:
    node(allow_unsafe_pickle=pickle_allowed)
    folder = tmp_path / "pipeline"
    shutil.copytree(fixtures_dir / "sd15-tiny-diffusers", folder)
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    hostile_pickle(folder / "unet" / "diffusion_pytorch_model.bin")
    error = _refused(model_load, path=str(folder))
    assert error.code is ErrorCode.FAILED_PRECONDITION and error.details["field"] == "path"
    assert "unet/diffusion_pytorch_model.bin" in error.message and "pickle" in error.message
    assert torch_loads == [] and not pickle_marker.exists()


def test_diffusers_never_falls_back_to_pickle_even_past_the_folder_check(
        fixtures_dir, hostile_pickle, pickle_marker, torch_loads, tmp_path, monkeypatch) -> None:
    """use_safetensors=True on its own: with the folder check skipped, diffusers refuses the
    .bin-only component rather than torch.load it."""
    from dops_worker.models import loader

    monkeypatch.setattr(loader, "require_safetensors_folder", lambda *args: None)
    monkeypatch.setattr(loader, "require_component_weights", lambda *args: None)
    folder = tmp_path / "pipeline"
    shutil.copytree(fixtures_dir / "sd15-tiny-diffusers", folder)
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    hostile_pickle(folder / "unet" / "diffusion_pytorch_model.bin")
    with pytest.raises(Exception):  # noqa: B017, PT011 - diffusers' own "no safetensors weights" error
        loader.build_pipeline(folder)
    assert torch_loads == [] and not pickle_marker.exists()


def test_a_pickle_the_node_allows_loads_weights_only(node, torch_loads, tmp_path) -> None:
    node(allow_unsafe_pickle=True)
    path = tmp_path / "plain.pth"
    torch.save({"weight": torch.ones(2)}, path)
    assert torch.equal(read_weights(path)["weight"], torch.ones(2))
    assert [call.get("weights_only") for call in torch_loads] == [True]


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_errors_for_files_that_are_not_weights_quote_nothing_of_them(node, tmp_path, suffix) -> None:
    """The first 8 bytes of a text file once came back as a "header length"; now nothing does."""
    node(allow_unsafe_pickle=True)
    secret = "root:$6$SECRETHASH:19000:0:99999:7:::\n"
    path = tmp_path / f"shadow{suffix}"
    path.write_text(secret * 4)
    error = _refused(read_weights, path)
    assert error.code is ErrorCode.INVALID_ARGUMENT
    text = f"{error.message} {error.details}"
    assert "SECRET" not in text and "root:" not in text
    header_length = str(int.from_bytes(secret[:8].encode(), "little"))
    assert header_length not in text
    if suffix == ".safetensors":
        assert "is not a safetensors file" in error.message


def test_a_folder_link_leading_out_of_the_model_roots_is_refused(model_load, node, fixtures_dir, tmp_path) -> None:
    outside = tmp_path / "outside"
    shutil.copytree(fixtures_dir / "sd15-tiny-diffusers" / "unet", outside / "unet")
    models = tmp_path / "models"
    folder = models / "pipeline"
    shutil.copytree(fixtures_dir / "sd15-tiny-diffusers", folder)
    shutil.rmtree(folder / "unet")
    (folder / "unet").symlink_to(outside / "unet", target_is_directory=True)
    node(model_roots=[models])
    error = _refused(model_load, path=str(folder))
    assert error.code is ErrorCode.INVALID_ARGUMENT and error.details["field"] == "path"
    assert "outside the model roots" in error.message
