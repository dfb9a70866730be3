"""A diffusers folder whose model components hold configs but no weights (a half-copied download,
a config-only checkout) is refused with FAILED_PRECONDITION naming the component, before diffusers
fails on it with an OSError that the worker could only answer as INTERNAL."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from dops_worker.models import load_pipeline
from dops_worker.protocol.errors import ErrorCode, WorkerError
from dops_worker.runtime.cancellation import CancelToken
from dops_worker.runtime.context import RequestContext


def _weightless_copy(fixtures_dir: Path, tmp_path: Path, *components: str) -> Path:
    folder = tmp_path / "configs-only"
    shutil.copytree(fixtures_dir / "sd15-tiny-diffusers", folder)
    for component in components:
        for weights in (folder / component).glob("*.safetensors"):
            weights.unlink()
    return folder


@pytest.mark.parametrize("components", [("unet",), ("text_encoder", "unet", "vae")], ids=["unet", "all"])
def test_a_folder_with_configs_but_no_weights_is_refused_naming_the_component(
        fixtures_dir: Path, tmp_path: Path, components: tuple[str, ...]) -> None:
    folder = _weightless_copy(fixtures_dir, tmp_path, *components)
    with pytest.raises(WorkerError) as caught:
        load_pipeline(folder)
    error = caught.value
    assert error.code is ErrorCode.FAILED_PRECONDITION
    assert error.details == {"field": "path", "reason": "model folder component holds no weights",
                             "component": components[0]}
    assert f"{components[0]}: no weights" in error.message


class _Backend:
    torch_device = "cpu"

    def device(self) -> dict[str, Any]:
        return {"capabilities": {"fp16": False}}


class _Session:
    backend = _Backend()


def test_model_load_answers_failed_precondition_not_internal(
        fixtures_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dops_worker.models import methods

    monkeypatch.setattr(methods, "_models", methods._Models())
    folder = _weightless_copy(fixtures_dir, tmp_path, "vae")
    ctx = RequestContext(request_id=1, method="model.load", token=CancelToken(), session=_Session(),  # type: ignore[arg-type]
                         notify=lambda name, params: None, status=dict)
    with pytest.raises(WorkerError) as caught:
        methods.load({"modelId": "m", "path": str(folder)}, ctx)
    assert caught.value.code is ErrorCode.FAILED_PRECONDITION
    assert caught.value.details["component"] == "vae"
