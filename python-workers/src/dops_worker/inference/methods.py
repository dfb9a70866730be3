"""``inference.generate`` and ``inference.capabilities`` on the worker's method registry.

Models come from a ``ModelSource``: by default the pipelines ``model.load`` placed on this
worker's device (``dops_worker.models.methods.loaded_model``), by the same model id, with the
hashes model.load was given (stamped into the images unless the request brings its own). Roots are
node settings (``runtime.settings``): images are read only under ``DOPS_INPUT_ROOT``, written only
under ``DOPS_ARTIFACT_ROOT``, LoRAs and ControlNets come only from ``DOPS_MODEL_ROOTS``.
"""

from __future__ import annotations

import dataclasses
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from dops_worker.inference.generate import GenerateHooks, generate_deferred
from dops_worker.inference.pipelines import capabilities, limits_for_pipeline
from dops_worker.inference.request import parse_generate_request
from dops_worker.protocol.errors import ErrorCode, WorkerError
from dops_worker.runtime.context import RequestContext
from dops_worker.runtime.registry import method
from dops_worker.runtime.settings import node_settings


@dataclass
class LoadedModel:
    """A pipeline already on its device, the hashes to stamp into its images and its name there
    (A1111's "Model:", the file's stem; empty = the model id)."""

    pipeline: Any
    hashes: dict[str, str] = field(default_factory=dict)
    name: str = ""


class ModelSource(Protocol):
    def get_loaded(self, model: str) -> LoadedModel | None: ...


class _InMemoryModels:
    """Models registered by ``register_loaded_model`` (tests, embedders), then the ones
    ``model.load`` holds in this worker's VRAM tier (dops_worker.models.methods)."""

    def __init__(self) -> None:
        self._models: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()

    def put(self, model: str, loaded: LoadedModel) -> None:
        with self._lock:
            self._models[model] = loaded

    def get_loaded(self, model: str) -> LoadedModel | None:
        with self._lock:
            registered = self._models.get(model)
        if registered is not None:
            return registered
        # Models that ``model.load`` put on this worker's device, by id.
        from dops_worker.models.methods import loaded_model

        held = loaded_model(model)
        return LoadedModel(held.pipeline, held.hashes, held.name) if held is not None else None


_in_memory = _InMemoryModels()
_source: ModelSource = _in_memory


def set_model_source(source: ModelSource) -> None:
    global _source
    _source = source


def register_loaded_model(model: str, pipeline: Any, hashes: dict[str, str] | None = None, name: str = "") -> None:
    """Makes ``pipeline`` available to requests naming ``model`` (the default source only)."""
    _in_memory.put(model, LoadedModel(pipeline, dict(hashes or {}), name))


def _model(params: Any) -> LoadedModel:
    name = params.get("model") if isinstance(params, dict) else None
    if not isinstance(name, str) or not name:
        raise WorkerError(ErrorCode.INVALID_ARGUMENT, "model: is required",
                          details={"field": "model", "reason": "is required"})
    loaded = _source.get_loaded(name)
    if loaded is None:
        raise WorkerError(ErrorCode.FAILED_PRECONDITION, f"model {name!r} is not loaded in this worker",
                          details={"field": "model", "reason": "not loaded"})
    return loaded


@method("inference.generate")
def generate_method(params: Any, ctx: RequestContext) -> Future[dict[str, Any]]:
    """Validates everything before any work, then runs the device work; see generate.generate for
    the result. Once only the PNG writes remain it sends ``$/progress {phase: "writing"}`` and
    returns a deferred reply (the execution thread takes the next request while they run)."""
    loaded = _model(params)
    if not params.get("modelHashes") and loaded.hashes:  # absent or {} (proto3: the same)
        params = {**params, "modelHashes": loaded.hashes}
    node = node_settings()
    request = parse_generate_request(
        params, limits=limits_for_pipeline(loaded.pipeline), input_roots=node.input_roots,
        artifact_roots=node.artifact_roots, model_roots=node.model_roots,
    )
    request = dataclasses.replace(request, model_name=loaded.name)
    backend = ctx.session.backend
    assert backend is not None  # requires_init
    hooks = GenerateHooks(
        progress=ctx.progress,
        raise_if_cancelled=ctx.token.raise_if_cancelled,
        release_memory=backend.release_caches,
        defer=ctx.after_reply.append,  # a cancelled run answers at once, then frees its memory
        writing=lambda steps: ctx.progress(steps, steps, phase="writing"),
    )
    generator_device = backend.device()["capabilities"].get("generatorDevice", "cpu")
    return generate_deferred(loaded.pipeline, request, device=backend.torch_device, generator_device=generator_device,
                    hooks=hooks)


@method("inference.capabilities")
def capabilities_method(params: Any, ctx: RequestContext) -> dict[str, Any]:
    """``{base, modes, pipelines, schedulers, size, steps, ...}`` for the loaded ``model``."""
    loaded = _model(params)
    return capabilities(loaded.pipeline, limits_for_pipeline(loaded.pipeline))
