"""model.load / model.unload / model.resident against a tiny checkpoint on CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dops_worker.protocol.errors import ErrorCode, WorkerError
from dops_worker.runtime.cancellation import CancelToken
from dops_worker.runtime.context import RequestContext


class _Backend:
    torch_device = "cpu"

    def device(self) -> dict[str, Any]:
        return {"capabilities": {"fp16": False}}


class _Session:
    backend = _Backend()


def _ctx(notes: list[tuple[str, Any]]) -> RequestContext:
    return RequestContext(request_id=3, method="model.load", token=CancelToken(), session=_Session(),  # type: ignore[arg-type]
                          notify=lambda name, params: notes.append((name, params)), status=dict)


@pytest.fixture
def methods(monkeypatch: pytest.MonkeyPatch) -> Any:
    from dops_worker.models import methods as module

    monkeypatch.setattr(module, "_models", module._Models())  # a fresh cache per test
    return module


def test_load_ram_then_vram_then_ram_hit_unload_and_resident(methods: Any, fixtures_dir: Path, tiny_configs: Path) -> None:
    notes: list[tuple[str, Any]] = []
    path = str((fixtures_dir / "sd15-tiny.safetensors").resolve())
    params = {"modelId": "m1", "path": path, "configDir": str(tiny_configs)}

    first = methods.load({**params, "tier": "ram"}, _ctx(notes))
    assert first["modelId"] == "m1" and first["tier"] == "ram" and first["source"] == "disk"
    assert first["bytes"] > 0 and first["timings"]["readS"] > 0
    assert [n[1]["step"] for n in notes if n[0] == "$/progress"] == [1, 2, 3]

    vram = methods.load({**params, "tier": "vram"}, _ctx(notes))
    assert vram["source"] == "ram" and vram["timings"]["readS"] == 0 and vram["timings"]["buildS"] == 0
    assert methods.resident({}, _ctx(notes))["models"] == [
        {"modelId": "m1", "path": path, "tier": "vram", "bytes": first["bytes"]}]
    assert methods.loaded_pipeline("m1") is not None

    assert methods.unload({"modelId": "m1", "tier": "vram"}, _ctx(notes)) == {"unloaded": True}
    assert methods.resident({}, _ctx(notes))["models"][0]["tier"] == "ram"
    again = methods.load({**params, "tier": "ram"}, _ctx(notes))
    assert again["source"] == "ram" and again["timings"]["readS"] == 0

    assert methods.unload({"modelId": "m1"}, _ctx(notes)) == {"unloaded": True}
    assert methods.unload({"modelId": "m1"}, _ctx(notes)) == {"unloaded": False}
    assert methods.resident({}, _ctx(notes)) == {"models": []}


def test_load_validates_params_before_any_work(methods: Any, tmp_path: Path) -> None:
    ctx = _ctx([])
    cases = [
        ({"path": "/x"}, "modelId"),
        ({"modelId": "m", "path": "../file.safetensors"}, "path"),
        ({"modelId": "m", "path": "/etc/hostname"}, "path"),
        ({"modelId": "m", "path": "/x", "tier": "disk"}, "tier"),
        ({"modelId": "m", "path": "/x", "allowUnsafePickle": "yes"}, "allowUnsafePickle"),
        ({"modelId": "m", "path": "/x", "extra": 1}, "extra"),
    ]
    for params, field in cases:
        with pytest.raises(WorkerError) as caught:
            methods.load(params, ctx)
        assert caught.value.code == ErrorCode.INVALID_ARGUMENT
        assert caught.value.details.get("field") == field
    with pytest.raises(WorkerError) as missing:
        methods.load({"modelId": "m", "path": str(tmp_path / "none.safetensors")}, ctx)
    assert missing.value.code == ErrorCode.NOT_FOUND


class _GenerateBackend(_Backend):
    def device(self) -> dict[str, Any]:
        return {"capabilities": {"fp16": False, "generatorDevice": "cpu"}}

    def release_caches(self) -> None:
        pass


def _generate_ctx() -> RequestContext:
    session = _Session()
    session.backend = _GenerateBackend()  # type: ignore[assignment]
    return RequestContext(request_id=4, method="inference.generate", token=CancelToken(),
                          session=session,  # type: ignore[arg-type]
                          notify=lambda name, params: None, status=dict)


def test_the_sha256_given_to_model_load_is_stamped_into_the_images(methods: Any, fixtures_dir: Path,
                                                                  tiny_configs: Path, tmp_path: Path,
                                                                  node: Any) -> None:
    import json

    import torch

    from dops_worker.inference.artifacts import read_metadata
    from dops_worker.inference.methods import generate_method as generate

    torch.manual_seed(0)
    node(input_root=tmp_path, artifact_root=tmp_path)
    path = str((fixtures_dir / "sd15-tiny.safetensors").resolve())
    sha256 = "0123456789abcdef" * 4
    base = {"modelId": "hashed", "path": path, "configDir": str(tiny_configs)}
    methods.load({**base, "tier": "vram", "sha256": sha256.upper()}, _ctx([]))
    params = {"model": "hashed", "prompt": "x", "width": 64, "height": 64, "steps": 1, "seed": 3, "outputDir": "j"}

    def metadata() -> tuple[str, dict[str, Any]]:
        text = read_metadata(Path(generate(params, _generate_ctx()).result()["images"][0]["path"]))
        return text["parameters"], json.loads(text["dops"])

    parameters, dops = metadata()
    assert ", Size: 64x64, Model hash: 0123456789, Model: sd15-tiny" in parameters
    assert dops["modelHashes"] == {"sha256": sha256, "autov2": "0123456789"}
    # A load of the unchanged file without the hash (a RAM → VRAM move, say) keeps it ...
    methods.unload({"modelId": "hashed", "tier": "vram"}, _ctx([]))
    methods.load({**base, "tier": "vram"}, _ctx([]))
    assert metadata()[1]["modelHashes"] == {"sha256": sha256, "autov2": "0123456789"}
    # ... and a model loaded without one has none (the file is not hashed on the load's path).
    methods.load({**base, "modelId": "unhashed", "tier": "vram"}, _ctx([]))
    text = read_metadata(Path(generate({**params, "model": "unhashed"}, _generate_ctx()).result()["images"][0]["path"]))
    assert "Model hash" not in text["parameters"] and json.loads(text["dops"])["modelHashes"] == {}


@pytest.mark.parametrize("sha256", ["abc", "g" * 64, 12, "0" * 63])
def test_load_refuses_a_malformed_sha256(methods: Any, sha256: Any) -> None:
    with pytest.raises(WorkerError) as caught:
        methods.load({"modelId": "m", "path": "/x", "sha256": sha256}, _ctx([]))
    assert caught.value.code == ErrorCode.INVALID_ARGUMENT and caught.value.details["field"] == "sha256"


def test_methods_are_registered() -> None:
    import dops_worker.models.methods  # noqa: F401
    from dops_worker.runtime.registry import registry

    assert {"model.load", "model.unload", "model.resident"} <= set(registry.names())
