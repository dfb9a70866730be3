"""inference.generate / inference.capabilities through the registry, with a real context."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from dops_worker.protocol.errors import ErrorCode, WorkerError
from dops_worker.runtime.cancellation import CancelToken
from dops_worker.runtime.context import RequestContext
from dops_worker.runtime.registry import registry


class _Backend:
    torch_device = "cpu"

    def __init__(self) -> None:
        self.released = 0

    def device(self) -> dict[str, Any]:
        return {"capabilities": {"generatorDevice": "cpu"}}

    def release_caches(self) -> None:
        self.released += 1


class _Session:
    def __init__(self) -> None:
        self.backend = _Backend()


def _context(notes: list[tuple[str, Any]], token: CancelToken | None = None) -> RequestContext:
    return RequestContext(request_id=7, method="inference.generate", token=token or CancelToken(),
                          session=_Session(), notify=lambda name, params: notes.append((name, params)),
                          status=dict)


@pytest.fixture
def methods(sd15: Any, roots: tuple[Path, Path], node: Any) -> Any:
    from dops_worker.inference import methods

    node(input_root=roots[0], artifact_root=roots[1])
    methods.register_loaded_model("tiny-sd15", sd15, {"sha256": "cd" * 32})
    return methods


def test_generate_through_the_registry(methods: Any, roots: tuple[Path, Path]) -> None:
    notes: list[tuple[str, Any]] = []
    handler = registry.get("inference.generate").handler
    deferred = handler({"model": "tiny-sd15", "prompt": "x", "width": 64, "height": 48, "steps": 2, "seed": 5,
                        "outputDir": "job-1", "_meta": {"traceparent": None}}, _context(notes))
    # The handler returns once only the writes remain, after saying so.
    assert isinstance(deferred, Future)
    result = deferred.result(timeout=30)
    assert result["seed"] == 5 and Path(result["images"][0]["path"]).parent == roots[1] / "job-1"
    assert [(params["step"], params["total"], params.get("phase")) for name, params in notes
            if name == "$/progress"] == [(1, 2, None), (2, 2, None), (2, 2, "writing")]
    assert all(params["id"] == 7 for _, params in notes)


def test_generate_cancelled_token_and_unknown_model(methods: Any) -> None:
    token = CancelToken()
    token.cancel()
    handler = registry.get("inference.generate").handler
    params = {"model": "tiny-sd15", "prompt": "x", "width": 64, "height": 48, "steps": 2, "outputDir": "j"}
    with pytest.raises(WorkerError) as caught:
        handler(params, _context([], token))
    assert caught.value.code is ErrorCode.CANCELLED
    with pytest.raises(WorkerError) as caught:
        handler({**params, "model": "nope"}, _context([]))
    assert caught.value.code is ErrorCode.FAILED_PRECONDITION and caught.value.details["field"] == "model"


def test_capabilities(methods: Any) -> None:
    result = registry.get("inference.capabilities").handler({"model": "tiny-sd15"}, _context([]))
    assert result["base"] == "sd15" and "DPM++ 2M Karras" in result["schedulers"]
    assert result["size"]["multiple"] == 8 and result["maxPromptTokens"] == 0
    assert result["maxPromptChars"] == 20_000 and result["clipSkip"] == {"min": 1, "max": 3}
    assert "StableDiffusionControlNetPipeline" in result["pipelines"]
