"""The compiled lane (CUDA only): ``torch.compile`` of the UNet for the static shapes the node names.

Settings (environment of the worker, read at each model load):

- ``DOPS_COMPILE_SHAPES``: comma-separated ``WIDTHxHEIGHT@BATCH`` (images per call), e.g.
  ``1024x1024@1,1024x1024@4``. Empty or unset: no compiled lane. Each shape is compiled at
  model load (a warm-up call per shape), so no request pays for a compile.
- ``DOPS_COMPILE_MODE``: torch.compile's mode, default ``default`` (``max-autotune-no-cudagraphs``
  compiles many times longer).
- ``DOPS_COMPILE_CACHE_DIR``: inductor's on-disk cache (``TORCHINDUCTOR_CACHE_DIR``), so a restarted
  worker loads the compiled kernels instead of compiling again; default ``<tmp>/dops-inductor-cache``.

A UNet call whose input shapes are those of a warm-up call runs compiled; any other (another
size, batch, prompt length, CFG off) runs the eager UNet (the same module, same weights), so
nothing compiles while serving — counted (``recompiles``: graphs compiled after the warm-up). A
compile that fails leaves the model eager (logged, ``compiled: False``). Off on CPU and DirectML:
the shapes are ignored there.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_log = logging.getLogger("dops_worker.inference.compiled")

SHAPES_ENV = "DOPS_COMPILE_SHAPES"
MODE_ENV = "DOPS_COMPILE_MODE"
CACHE_ENV = "DOPS_COMPILE_CACHE_DIR"
MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
_SHAPE = re.compile(r"^(\d+)x(\d+)@(\d+)$")
# Set on a model's pipeline whose UNet has a compiled lane: its UnetRouter.
LANE_ATTR = "_dops_compiled_lane"


@dataclass(frozen=True)
class CompileShape:
    width: int
    height: int
    batch: int

    def __str__(self) -> str:
        return f"{self.width}x{self.height}@{self.batch}"


@dataclass(frozen=True)
class CompileSettings:
    shapes: tuple[CompileShape, ...] = ()
    mode: str = "default"
    cache_dir: str = ""


def parse_shapes(text: str) -> tuple[CompileShape, ...]:
    """``"1024x1024@1, 832x1216@4"`` → shapes, in order, without repeats. Raises ValueError naming
    the item for anything else (sizes must be positive multiples of 8, batches 1 to 64)."""
    shapes: list[CompileShape] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        match = _SHAPE.match(item)
        if match is None:
            raise ValueError(f"{SHAPES_ENV}: {item!r} is not WIDTHxHEIGHT@BATCH")
        width, height, batch = (int(group) for group in match.groups())
        if width <= 0 or height <= 0 or width % 8 or height % 8:
            raise ValueError(f"{SHAPES_ENV}: {item!r}: width and height must be positive multiples of 8")
        if not 1 <= batch <= 64:
            raise ValueError(f"{SHAPES_ENV}: {item!r}: batch must be 1 to 64")
        shape = CompileShape(width, height, batch)
        if shape not in shapes:
            shapes.append(shape)
    return tuple(shapes)


def compile_settings(env: Mapping[str, str] = os.environ) -> CompileSettings:
    """The settings from ``env``; raises ValueError naming the variable when one is malformed."""
    mode = env.get(MODE_ENV, "").strip() or "default"
    if mode not in MODES:
        raise ValueError(f"{MODE_ENV}: must be one of {', '.join(MODES)}, not {mode!r}")
    cache_dir = env.get(CACHE_ENV, "").strip() or os.path.join(tempfile.gettempdir(), "dops-inductor-cache")
    return CompileSettings(parse_shapes(env.get(SHAPES_ENV, "")), mode, cache_dir)


class UnetRouter:
    """Stands in for the UNet in a request's pipeline: a call whose inputs have the shapes of a
    warm-up call goes to the compiled UNet, any other to the eager one (the same weights), so
    nothing is compiled while serving. Everything else (config, dtype, device…) is the eager UNet's."""

    def __init__(self, eager: Any, compiled: Any) -> None:
        self.eager = eager
        self.compiled = compiled
        self.signatures: set[tuple[Any, ...]] = set()
        self.recording = False
        self.graphs_after_warmup = 0
        self.reported_recompiles = 0

    def __call__(self, sample: Any, timestep: Any, encoder_hidden_states: Any = None, *args: Any, **kwargs: Any) -> Any:
        signature = _signature(sample, encoder_hidden_states, kwargs)
        if self.recording:
            self.signatures.add(signature)
            target = self.compiled
        else:
            target = self.compiled if signature in self.signatures else self.eager
        return target(sample, timestep, encoder_hidden_states, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.eager, name)

    def recompiles(self) -> int:
        """Graphs compiled since the warm-up ended (0 in steady state)."""
        return max(0, compiled_graphs() - self.graphs_after_warmup)


def _signature(sample: Any, encoder_hidden_states: Any, kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    added = kwargs.get("added_cond_kwargs") or {}
    shapes = tuple(sorted((key, tuple(value.shape)) for key, value in added.items() if hasattr(value, "shape")))
    hidden = tuple(encoder_hidden_states.shape) if encoder_hidden_states is not None else None
    return (tuple(sample.shape), str(sample.dtype), hidden, shapes)


def compiled_graphs() -> int:
    """How many graphs dynamo compiled in this process (torch._dynamo's own counter)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def router_of(pipe: Any) -> UnetRouter | None:
    return getattr(pipe, LANE_ATTR, None)


def select_unet(run_pipe: Any, model_pipe: Any) -> None:
    """Gives ``run_pipe`` (a request's pipeline, sharing ``model_pipe``'s modules) the model's
    router when the model has a compiled lane; otherwise leaves its eager UNet."""
    router = router_of(model_pipe)
    if router is not None:
        # Not through DiffusionPipeline.__setattr__: the router is no registered module class.
        object.__setattr__(run_pipe, "unet", router)


def report_recompiles(model_pipe: Any) -> int:
    """Logs a warning when graphs were compiled since the warm-up (never in steady state); returns
    how many. 0 without a compiled lane."""
    router = router_of(model_pipe)
    if router is None:
        return 0
    count = router.recompiles()
    if count > router.reported_recompiles:
        router.reported_recompiles = count
        _log.warning("the compiled lane recompiled", extra={"recompiles": count})
    return count


def prepare_compiled_lane(pipe: Any, device: str, settings: CompileSettings,
                          warm_up: Callable[[Any, CompileShape], None],
                          compile_fn: Callable[..., Any] | None = None) -> dict[str, Any]:
    """Compiles ``pipe.unet`` and runs ``warm_up(router, shape)`` once per shape (it must call the
    UNet through the router exactly as a request would), then attaches the router to ``pipe``.
    Called again after the model came back to the device, it warms up again (the guards see the
    new weights' device; the compiled code comes from the cache). Returns ``{compiled, shapes,
    compileS, warmUpS, mode}``, or ``{compiled: False, error}``; never raises: on failure the model
    stays eager. Off CUDA or without shapes: ``{compiled: False, reason}``."""
    if not settings.shapes or not device.startswith("cuda"):
        return {"compiled": False, "reason": "no shapes" if not settings.shapes else "not cuda"}
    import torch

    os.makedirs(settings.cache_dir, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = settings.cache_dir  # read when inductor first compiles
    existing = router_of(pipe)
    eager = existing.eager if existing is not None else pipe.unet
    if existing is not None:
        delattr(pipe, LANE_ATTR)
    started = time.perf_counter()
    per_shape: dict[str, float] = {}
    try:
        compiled = existing.compiled if existing is not None else (compile_fn or torch.compile)(
            eager, mode=settings.mode, fullgraph=True, dynamic=False)
        router = UnetRouter(eager, compiled)
        router.recording = True
        for shape in settings.shapes:
            shape_started = time.perf_counter()
            warm_up(router, shape)
            per_shape[str(shape)] = round(time.perf_counter() - shape_started, 3)
        router.recording = False
    except Exception as exc:  # noqa: BLE001 - any compiler failure means: serve eager
        _log.warning("compiling the UNet failed; the model stays eager", exc_info=True,
                     extra={"shapes": [str(s) for s in settings.shapes]})
        return {"compiled": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
    router.graphs_after_warmup = compiled_graphs()
    setattr(pipe, LANE_ATTR, router)
    report = {"compiled": True, "shapes": [str(s) for s in settings.shapes], "mode": settings.mode,
              "compileS": round(time.perf_counter() - started, 3), "warmUpS": per_shape,
              "signatures": len(router.signatures), "cacheDir": settings.cache_dir}
    _log.info("compiled lane ready", extra=report)
    return report

