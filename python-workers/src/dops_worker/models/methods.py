"""``model.load``, ``model.unload`` and ``model.resident``: the worker's side of the model tiers.

One ``ModelCache`` per worker process, on the device this worker owns (built on the first load,
from the backend ``initialize`` chose). Models are named by the model service's id; the worker
keeps id → path so the cache (keyed by path) and the id agree. Importing this module registers
the methods with the runtime registry.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dops_worker.protocol.errors import ErrorCode, InvalidParams, WorkerError
from dops_worker.protocol.files import confined, confined_files
from dops_worker.runtime.context import RequestContext
from dops_worker.runtime.params import get_enum, require_object
from dops_worker.runtime.registry import method
from dops_worker.runtime.settings import node_settings

from .hashes import is_sha256_hex, model_hashes
from .weights import require_pickle_allowed, require_safetensors_folder

TIERS = ("ram", "vram")
_LOAD_STEPS = 3


@dataclass
class _Held:
    model_id: str
    path: Path
    config_dir: str | None
    tier: str
    bytes: int
    pipeline: Any
    # {"sha256", "autov2"} from model.load's sha256 (the registry's); empty when none was given.
    hashes: dict[str, str]
    file_stamp: tuple[int, int] | None


@dataclass(frozen=True)
class ResidentModel:
    """A model on this worker's device: its pipeline, its file's hashes (empty = unknown) and
    name (the file's or folder's stem, A1111's "Model:")."""

    pipeline: Any
    hashes: dict[str, str]
    name: str


class _Models:
    """The worker's cache plus the id → path book-keeping; one lock, loads are serialised."""

    def __init__(self) -> None:
        self._cache: Any = None
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()

    def cache(self, ctx: RequestContext) -> Any:
        if self._cache is None:
            import torch

            from .cache import ModelCache

            backend = ctx.session.backend
            assert backend is not None  # requires_init
            device = backend.torch_device
            capabilities = backend.device().get("capabilities", {})
            # fp16 where the device computes it; float32 on cpu (fp16 matmuls there are slow or missing).
            dtype = torch.float16 if not device.startswith("cpu") and capabilities.get("fp16") else torch.float32
            self._cache = ModelCache(device, dtype)
        return self._cache

    def load(self, ctx: RequestContext, model_id: str, path: Path, tier: str, config_dir: str | None,
             sha256: str | None = None) -> dict[str, Any]:
        with self._lock:
            cache = self.cache(ctx)
            previous = self._held.get(model_id)
            if previous is not None and (previous.path != path or previous.config_dir != config_dir):
                # The same id now names another file (moved or replaced): forget the old one.
                cache.unload(previous.path, tier="ram", config_dir=previous.config_dir)
                del self._held[model_id]
                previous = None
            ctx.progress(1, _LOAD_STEPS)
            ctx.token.raise_if_cancelled()
            loaded = cache.load(path, config_dir=config_dir, tier="device" if tier == "vram" else "ram")
            ctx.progress(2, _LOAD_STEPS)
            timings = loaded.timings
            source = loaded.source
            if tier == "ram" and source == "device":
                # Asked for the RAM tier while on the device: hand the device copy back.
                cache.unload(path, tier="device", config_dir=config_dir)
                source = "ram"
            compiled = _compiled_lane(loaded.pipeline, str(cache.device), source) if tier == "vram" else None
            stamp = _stamp(path)
            if sha256 is not None:
                hashes = model_hashes(sha256)
            elif previous is not None and previous.file_stamp == stamp:
                hashes = previous.hashes  # e.g. a RAM → VRAM promotion that does not repeat the hash
            else:
                # Hashing here would read a checkpoint a second time on the load's path; the model
                # service hashes in the background and passes the result.
                hashes = {}
            held = _Held(model_id, path, config_dir, tier, _pipeline_bytes(loaded.pipeline), loaded.pipeline,
                         hashes, stamp)
            self._held[model_id] = held
            ctx.progress(3, _LOAD_STEPS)
            return {
                "modelId": model_id,
                "tier": tier,
                "bytes": held.bytes,
                "source": source,
                "timings": {
                    "readS": float(timings.get("read_s", 0.0)),
                    "buildS": float(timings.get("build_s", 0.0)),
                    "toDeviceS": float(timings.get("to_device_s", 0.0)),
                },
                **({"compiled": compiled} if compiled is not None else {}),
            }

    def unload(self, ctx: RequestContext, model_id: str, tier: str) -> dict[str, Any]:
        with self._lock:
            held = self._held.get(model_id)
            if held is None:
                return {"unloaded": False}
            cache = self.cache(ctx)
            if tier == "vram":
                if held.tier != "vram":
                    return {"unloaded": False}
                cache.unload(held.path, tier="device", config_dir=held.config_dir)
                held.tier = "ram"
            else:
                cache.unload(held.path, tier="ram", config_dir=held.config_dir)
                del self._held[model_id]
            return {"unloaded": True}

    def resident(self) -> dict[str, Any]:
        with self._lock:
            return {
                "models": [
                    {"modelId": h.model_id, "path": str(h.path), "tier": h.tier, "bytes": h.bytes}
                    for h in sorted(self._held.values(), key=lambda h: h.model_id)
                ]
            }

    def loaded(self, model_id: str) -> ResidentModel | None:
        with self._lock:
            held = self._held.get(model_id)
            if held is None or held.tier != "vram":
                return None
            return ResidentModel(held.pipeline, dict(held.hashes), held.path.stem)


def _compiled_lane(pipeline: Any, device: str, source: str) -> dict[str, Any] | None:
    """The compiled lane's report when the node names compile shapes and this is CUDA (None
    otherwise): compiled at load, warmed up again when the model came back to the device.
    Throws FAILED_PRECONDITION naming the setting when DOPS_COMPILE_* is malformed."""
    from dops_worker.inference.compiled import compile_settings, prepare_compiled_lane, router_of
    from dops_worker.inference.warm_up import pipeline_warm_up

    try:
        settings = compile_settings()
    except ValueError as exc:
        raise WorkerError(ErrorCode.FAILED_PRECONDITION, str(exc), details={"setting": str(exc).split(":")[0]}) from exc
    if not settings.shapes or not device.startswith("cuda"):
        return None
    if source == "device" and router_of(pipeline) is not None:
        return None  # already there, warm
    return prepare_compiled_lane(pipeline, device, settings, pipeline_warm_up(pipeline))


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _pipeline_bytes(pipeline: Any) -> int:
    import torch

    total = 0
    components = getattr(pipeline, "components", {}) or {}
    for value in components.values():
        if isinstance(value, torch.nn.Module):
            for tensor in [*value.parameters(), *value.buffers()]:
                total += tensor.numel() * tensor.element_size()
    return total


_models = _Models()


def loaded_pipeline(model_id: str) -> Any | None:
    """The pipeline of ``model_id`` when it is in this worker's VRAM tier, else None. Never raises."""
    loaded = _models.loaded(model_id)
    return loaded.pipeline if loaded is not None else None


def loaded_model(model_id: str) -> ResidentModel | None:
    """``model_id``'s pipeline, hashes and name when it is in this worker's VRAM tier, else None.
    Never raises."""
    return _models.loaded(model_id)


def _model_id(params: dict[str, Any]) -> str:
    value = params.get("modelId")
    if not isinstance(value, str) or not value:
        raise InvalidParams("modelId", "is required")
    if len(value) > 200:
        raise InvalidParams("modelId", "must be at most 200 characters")
    return value


def _sha256(params: dict[str, Any]) -> str | None:
    value = params.get("sha256")
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not is_sha256_hex(value.lower()):
        raise InvalidParams("sha256", "must be 64 hex digits (the file's sha256)")
    return value.lower()


def _tier(params: dict[str, Any], default: str) -> str:
    tier = get_enum(params, "tier", TIERS, default)
    assert tier is not None
    return tier


@method("model.load")
def load(params: Any, ctx: RequestContext) -> dict[str, Any]:
    """``{modelId, path, tier: ram|vram, configDir?, sha256?}`` → ``{modelId, tier, bytes, source,
    timings: {readS, buildS, toDeviceS}}``; ``$/progress`` at start, after the load and when done.
    ``sha256`` (64 hex digits, the registry's hash of the file) is stamped into the model's images
    as ``modelHashes`` {sha256, autov2}; without it the hashes of an earlier load of the unchanged
    file are kept, else there are none (the file is not hashed on the load's path).
    ``path`` and ``configDir`` must lie in the node's model roots (DOPS_MODEL_ROOTS); whether
    pickle loads is the node's setting (DOPS_ALLOW_UNSAFE_PICKLE), never the request's.
    A RAM-tier hit reads nothing (readS = buildS = 0). Throws what the loader throws (NOT_FOUND,
    INVALID_ARGUMENT, FAILED_PRECONDITION for pickle, UNSUPPORTED, OUT_OF_MEMORY)."""
    params = require_object(params, ("modelId", "path", "tier", "configDir", "sha256"))
    model_id = _model_id(params)
    tier = _tier(params, "vram")
    sha256 = _sha256(params)
    raw_config_dir = params.get("configDir")
    if raw_config_dir is not None and not isinstance(raw_config_dir, str):
        raise InvalidParams("configDir", "must be a non-empty string when given")
    if params.get("path") is None:
        raise InvalidParams("path", "is required")
    roots = node_settings().model_roots
    path = confined(params["path"], roots, "path")
    config_dir = None
    if raw_config_dir is not None:
        config_folder = confined(raw_config_dir, roots, "configDir")
        confined_files(config_folder, roots, "configDir")  # the loader reads the configs in it
        config_dir = str(config_folder)
    if not path.exists():
        raise WorkerError(ErrorCode.NOT_FOUND, f"path: {params['path']}: no such file or folder",
                          details={"field": "path"})
    # Refused before any work (the loader checks again, for its other callers).
    if path.is_dir():
        require_safetensors_folder(path, roots, "path")
    else:
        require_pickle_allowed(path, "path")
    return _models.load(ctx, model_id, path, tier, config_dir, sha256)


@method("model.unload")
def unload(params: Any, ctx: RequestContext) -> dict[str, Any]:
    """``{modelId, tier: ram|vram}`` → ``{unloaded}``. ``vram`` keeps the RAM copy; ``ram`` (default) drops both."""
    params = require_object(params, ("modelId", "tier"))
    return _models.unload(ctx, _model_id(params), _tier(params, "ram"))


@method("model.resident")
def resident(params: Any, ctx: RequestContext) -> dict[str, Any]:
    """``{}`` → ``{models: [{modelId, path, tier, bytes}]}`` held by this worker, by id."""
    require_object(params)
    return _models.resident()
