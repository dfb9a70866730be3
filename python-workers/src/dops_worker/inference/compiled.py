"""The compiled lane (CUDA only): ``torch.compile`` of the UNet and of the VAE decode for the
static shapes the node names, compiled at model load.

Settings (environment of the worker, read at each model load):

- ``DOPS_COMPILE_SHAPES``: comma-separated ``WIDTHxHEIGHT@BATCH`` (images per call), e.g.
  ``1024x1024@1,1024x1024@4``. Empty or unset: no compiled lane. Each shape is compiled at
  model load (a warm-up call per shape and part), so no request pays for a compile.
- ``DOPS_COMPILE_MODE``: torch.compile's mode, default ``default``; ``reduce-overhead`` adds CUDA
  graphs (``max-autotune-no-cudagraphs`` compiles many times longer).
- ``DOPS_COMPILE_INDUCTOR``: inductor settings while compiling: ``conv1x1`` (default:
  ``conv_1x1_as_mm``), ``diffusers`` (also ``coordinate_descent_tuning``,
  ``coordinate_descent_check_all_directions``, ``epilogue_fusion=False``: the set diffusers'
  "Accelerate inference" page gives for SDXL; longer compiles) or ``none`` (inductor's defaults).
- ``DOPS_COMPILE_VAE``: ``1`` (default) also compiles ``vae.decode``; ``0`` leaves it eager.
- ``DOPS_COMPILE_CACHE_DIR``: inductor's on-disk cache (``TORCHINDUCTOR_CACHE_DIR``), so a restarted
  worker loads the compiled kernels instead of compiling again; default ``<tmp>/dops-inductor-cache``.

Both parts are put in ``torch.channels_last`` first (diffusers' torch.compile recipe), again at
each preparation: a model back from the RAM tier has its weights in the layout they were held in.
The UNet and the decode are compiled with ``fullgraph=True, dynamic=False``. A UNet call whose
input shapes (and given arguments) are those of a warm-up call runs compiled, its inputs made
contiguous and its timestep a float32 tensor as in the warm-up (so img2img's channels_last
latents and the int64 timesteps of DPM++/DDIM/UniPC/LCM hit the same graph as Euler's; the UNet
embeds timesteps in float32 anyway); any other call (another size, batch, prompt length, CFG off,
a ControlNet's residuals) runs the eager UNet (the same module, same weights), so nothing
compiles while serving. The decode likewise (``DecodeRouter``, attached to the VAE module;
decode.py calls it): compiled for the latents of a compile shape (batch × channels ×
height/f × width/f) in the dtype it was warmed up in (fp16 on CUDA), eager for anything else —
another shape, the fp32 decode of the NaN fallback, tiling or slicing on. Graphs compiled after the warm-ups are counted
(``recompiles``; 0 in steady state). LoRAs are fused into the UNet's weights in place for the
request and restored after it (lora.py), so the compiled graph sees the same parameters and
module tree and does not recompile. A UNet compile that fails leaves the model eager (logged,
``compiled: False``); a decode compile that fails leaves the decode eager and the UNet lane on.
Off on CPU and DirectML: the shapes are ignored there.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

_log = logging.getLogger("dops_worker.inference.compiled")

SHAPES_ENV = "DOPS_COMPILE_SHAPES"
MODE_ENV = "DOPS_COMPILE_MODE"
CACHE_ENV = "DOPS_COMPILE_CACHE_DIR"
INDUCTOR_ENV = "DOPS_COMPILE_INDUCTOR"
VAE_ENV = "DOPS_COMPILE_VAE"
MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDAGRAPH_MODES = ("reduce-overhead", "max-autotune")
# torch._inductor.config values patched in while the lane compiles (the warm-up calls).
INDUCTOR_PRESETS: dict[str, dict[str, Any]] = {
    "none": {},
    "conv1x1": {"conv_1x1_as_mm": True},
    "diffusers": {"conv_1x1_as_mm": True, "coordinate_descent_tuning": True, "epilogue_fusion": False,
                  "coordinate_descent_check_all_directions": True},
}
DEFAULT_INDUCTOR = "conv1x1"
_SHAPE = re.compile(r"^(\d+)x(\d+)@(\d+)$")
# Set on a model's pipeline whose UNet has a compiled lane: its UnetRouter.
LANE_ATTR = "_dops_compiled_lane"
# Set on a VAE module whose decode is compiled: its DecodeRouter.
DECODE_ATTR = "_dops_compiled_decode"
# Graphs dynamo compiled inside the lanes' preparations (compiles, warm-ups), every model together;
# the rest of compiled_graphs() was compiled while serving.
_prepared_graphs = 0


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
    inductor: str = DEFAULT_INDUCTOR
    vae: bool = True


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
    inductor = env.get(INDUCTOR_ENV, "").strip() or DEFAULT_INDUCTOR
    if inductor not in INDUCTOR_PRESETS:
        raise ValueError(f"{INDUCTOR_ENV}: must be one of {', '.join(INDUCTOR_PRESETS)}, not {inductor!r}")
    vae = env.get(VAE_ENV, "").strip() or "1"
    if vae not in ("0", "1"):
        raise ValueError(f"{VAE_ENV}: must be 0 or 1, not {vae!r}")
    cache_dir = env.get(CACHE_ENV, "").strip() or os.path.join(tempfile.gettempdir(), "dops-inductor-cache")
    return CompileSettings(parse_shapes(env.get(SHAPES_ENV, "")), mode, cache_dir, inductor, vae == "1")


def warm_up_calls(mode: str) -> int:
    """Decode warm-up calls per shape: CUDA graphs (``reduce-overhead``, ``max-autotune``) run a
    compiled function once as is and record it on the second call, so both happen at model load;
    the UNet's warm-up already calls it once per step (``WARM_UP_STEPS`` ≥ 2)."""
    return 2 if mode in CUDAGRAPH_MODES else 1


def inductor_options(preset: str) -> dict[str, Any]:
    """The ``torch._inductor.config`` values of ``preset`` (a copy); KeyError for an unknown one."""
    return dict(INDUCTOR_PRESETS[preset])


class UnetRouter:
    """Stands in for the UNet in a request's pipeline: a call whose inputs have the shapes of a
    warm-up call goes to the compiled UNet, any other to the eager one (the same weights), so
    nothing is compiled while serving. Everything else (config, dtype, device…) is the eager UNet's."""

    def __init__(self, eager: Any, compiled: Any) -> None:
        self.eager = eager
        self.compiled = compiled
        self.signatures: set[tuple[Any, ...]] = set()
        self.recording = False
        self.serving_graphs_at_ready = 0
        self.reported_recompiles = 0

    def __call__(self, sample: Any, timestep: Any, encoder_hidden_states: Any = None, *args: Any, **kwargs: Any) -> Any:
        signature = _signature(sample, encoder_hidden_states, kwargs)
        if self.recording:
            self.signatures.add(signature)
        elif signature not in self.signatures:
            return self.eager(sample, timestep, encoder_hidden_states, *args, **kwargs)
        # The graph's guards check strides too: inputs in another layout (img2img's latents from a
        # channels_last VAE encoder, a step after a channels_last output) would compile another.
        added = kwargs.get("added_cond_kwargs")
        if isinstance(added, dict):
            kwargs = {**kwargs, "added_cond_kwargs": {key: _contiguous(value) for key, value in added.items()}}
        return self.compiled(_contiguous(sample), _float_timestep(timestep, sample), _contiguous(encoder_hidden_states),
                             *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.eager, name)

    def recompiles(self) -> int:
        """Graphs compiled while serving since this lane was ready (0 in steady state)."""
        return max(0, serving_graphs() - self.serving_graphs_at_ready)


class DecodeRouter:
    """Stands in for ``vae.decode`` (decode.py calls ``decode_fn(vae)``): latents of the shape and
    dtype of a warm-up call go to the compiled decode, anything else — and any call while the VAE
    tiles, slices or carries an offload hook — to the eager ``vae.decode``."""

    def __init__(self, vae: Any, compiled: Any) -> None:
        self.vae = vae
        self.compiled = compiled
        self.signatures: set[tuple[Any, ...]] = set()
        self.recording = False

    def __call__(self, latents: Any, *args: Any, **kwargs: Any) -> Any:
        if self.recording:
            self.signatures.add(self.signature(latents))
        target = self.compiled if self.recording else self.target(latents)
        return target(_contiguous(latents) if target is self.compiled else latents, *args, **kwargs)

    def target(self, latents: Any) -> Any:
        """The compiled decode when ``latents`` were warmed up and the VAE is as it was then."""
        vae = self.vae
        if (getattr(vae, "use_tiling", False) or getattr(vae, "use_slicing", False)
                or hasattr(vae, "_hf_hook") or self.signature(latents) not in self.signatures):
            return vae.decode
        return self.compiled

    def signature(self, latents: Any) -> tuple[Any, ...]:
        return (tuple(latents.shape), str(latents.dtype), str(latents.device), str(self.vae.dtype))


def _signature(sample: Any, encoder_hidden_states: Any, kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    added = kwargs.get("added_cond_kwargs") or {}
    shapes = tuple(sorted((key, tuple(value.shape)) for key, value in added.items() if hasattr(value, "shape")))
    hidden = tuple(encoder_hidden_states.shape) if encoder_hidden_states is not None else None
    # Which arguments are given: a ControlNet's residuals are inputs the warm-up graph has not.
    given = tuple(sorted(key for key, value in kwargs.items() if value is not None))
    return (tuple(sample.shape), str(sample.dtype), hidden, shapes, given)


def _float_timestep(timestep: Any, sample: Any) -> Any:
    """The timestep as a float32 tensor on the sample's device, as the warm-up's Euler steps give
    it; other schedulers step on int64 timesteps, a dtype the graph's guards would compile again
    for. The same numbers: the UNet's time embedding starts with ``timesteps.float()``."""
    import torch

    return torch.as_tensor(timestep).to(device=sample.device, dtype=torch.float32)


def _contiguous(value: Any) -> Any:
    """``value.contiguous()`` for a tensor (itself when it already is), anything else as it is."""
    return value.contiguous() if hasattr(value, "contiguous") else value


def compiled_graphs() -> int:
    """How many graphs dynamo compiled in this process (torch._dynamo's own counter)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def serving_graphs() -> int:
    """Graphs compiled in this process outside the lanes' preparations."""
    return compiled_graphs() - _prepared_graphs


def router_of(pipe: Any) -> UnetRouter | None:
    return getattr(pipe, LANE_ATTR, None)


def decode_router_of(vae: Any) -> DecodeRouter | None:
    return getattr(vae, DECODE_ATTR, None) if vae is not None else None


def decode_fn(vae: Any) -> Callable[..., Any]:
    """What decodes latents with ``vae``: its DecodeRouter when the decode is compiled, else
    ``vae.decode``. Called as ``vae.decode`` is: ``decode_fn(vae)(latents, return_dict=False)``."""
    router = decode_router_of(vae)
    return router if router is not None else vae.decode


def select_unet(run_pipe: Any, model_pipe: Any) -> None:
    """Gives ``run_pipe`` (a request's pipeline, sharing ``model_pipe``'s modules) the model's
    router when the model has a compiled lane; otherwise leaves its eager UNet."""
    router = router_of(model_pipe)
    if router is not None:
        # Not through DiffusionPipeline.__setattr__: the router is no registered module class.
        object.__setattr__(run_pipe, "unet", router)


def report_recompiles(model_pipe: Any) -> int:
    """Logs a warning when graphs were compiled while serving since the lane was ready (never in
    steady state); returns how many. 0 without a compiled lane."""
    router = router_of(model_pipe)
    if router is None:
        return 0
    count = router.recompiles()
    if count > router.reported_recompiles:
        router.reported_recompiles = count
        _log.warning("the compiled lane recompiled", extra={"recompiles": count})
    return count


def _channels_last(module: Any, on: bool) -> None:
    import torch

    module.to(memory_format=torch.channels_last if on else torch.contiguous_format)


def _decode_warm_up(router: DecodeRouter, shape: CompileShape) -> None:
    """One decode of ``shape.batch`` random latents of ``shape``'s size, as decode.py calls it."""
    import torch

    vae = router.vae
    factor = 2 ** (len(vae.config.block_out_channels) - 1)  # the pipelines' vae_scale_factor
    latents = torch.randn(shape.batch, vae.config.latent_channels, shape.height // factor, shape.width // factor,
                          generator=torch.Generator().manual_seed(0)).to(vae.device, vae.dtype)
    with torch.no_grad():
        router(latents, return_dict=False)


def prepare_compiled_lane(pipe: Any, device: str, settings: CompileSettings,
                          warm_up: Callable[[Any, CompileShape], None],
                          compile_fn: Callable[..., Any] | None = None,
                          decode_warm_up: Callable[[DecodeRouter, CompileShape], None] = _decode_warm_up) -> dict[str, Any]:
    """Puts ``pipe.unet`` (and ``pipe.vae``) in channels_last, compiles the UNet and runs
    ``warm_up(router, shape)`` once per shape (it must call the UNet through the router exactly as
    a request would), then compiles ``pipe.vae.decode`` and runs ``decode_warm_up`` per shape;
    attaches the routers to ``pipe`` and its VAE. Called again after the model came back to the
    device, it warms up again (the guards see the new weights; the compiled code is reused).
    Returns ``{compiled, shapes, mode, inductor, compileS, warmUpS, unet: {compileS, warmUpS},
    vae: {compiled, compileS, warmUpS} | {compiled: False, error|reason}, …}``, or
    ``{compiled: False, error}``; never raises: on failure the model stays eager (as it was, in
    its own memory format). Off CUDA or without shapes: ``{compiled: False, reason}``."""
    if not settings.shapes or not device.startswith("cuda"):
        return {"compiled": False, "reason": "no shapes" if not settings.shapes else "not cuda"}
    import torch
    import torch._inductor.config as inductor_config

    os.makedirs(settings.cache_dir, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = settings.cache_dir  # read when inductor first compiles
    existing = router_of(pipe)
    eager = existing.eager if existing is not None else pipe.unet
    if existing is not None:
        delattr(pipe, LANE_ATTR)
    vae = getattr(pipe, "vae", None)
    existing_decode = decode_router_of(vae)
    if existing_decode is not None:
        delattr(vae, DECODE_ATTR)
    compile_fn = compile_fn or torch.compile
    options = inductor_options(settings.inductor)
    started = time.perf_counter()
    per_shape: dict[str, float] = {}
    try:
        with _counted_as_preparation(), inductor_config.patch(options):
            _channels_last(eager, True)
            compiled = existing.compiled if existing is not None else compile_fn(
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
        _restore_layout(eager)
        if vae is not None and existing_decode is not None:
            _restore_layout(vae)
        return {"compiled": False, "error": _error(exc)}
    unet_s = round(time.perf_counter() - started, 3)
    vae_report = _prepare_decode(vae, settings, options, existing_decode, compile_fn, decode_warm_up)
    router.serving_graphs_at_ready = serving_graphs()
    setattr(pipe, LANE_ATTR, router)
    report = {"compiled": True, "shapes": [str(s) for s in settings.shapes], "mode": settings.mode,
              "inductor": settings.inductor, "channelsLast": True,
              "compileS": round(time.perf_counter() - started, 3), "warmUpS": per_shape,
              "unet": {"compileS": unet_s, "warmUpS": per_shape}, "vae": vae_report,
              "signatures": len(router.signatures), "cacheDir": settings.cache_dir}
    _log.info("compiled lane ready", extra=report)
    return report


def _prepare_decode(vae: Any, settings: CompileSettings, options: Mapping[str, Any],
                    existing: DecodeRouter | None, compile_fn: Callable[..., Any],
                    decode_warm_up: Callable[[DecodeRouter, CompileShape], None]) -> dict[str, Any]:
    """Compiles and warms up ``vae.decode`` (the UNet lane is ready by now); on failure the VAE
    stays eager, in its own layout. Returns the VAE part of the lane's report."""
    if vae is None or not hasattr(vae, "decode"):
        return {"compiled": False, "reason": "no vae"}
    if not settings.vae:
        return {"compiled": False, "reason": f"{VAE_ENV}=0"}
    if getattr(vae, "use_tiling", False) or getattr(vae, "use_slicing", False):
        return {"compiled": False, "reason": "tiling or slicing on"}
    import torch._inductor.config as inductor_config

    started = time.perf_counter()
    per_shape: dict[str, float] = {}
    try:
        with _counted_as_preparation(), inductor_config.patch(dict(options)):
            _channels_last(vae, True)
            compiled = existing.compiled if existing is not None else compile_fn(
                vae.decode, mode=settings.mode, fullgraph=True, dynamic=False)
            router = DecodeRouter(vae, compiled)
            router.recording = True
            for shape in settings.shapes:
                shape_started = time.perf_counter()
                for _ in range(warm_up_calls(settings.mode)):
                    decode_warm_up(router, shape)
                per_shape[str(shape)] = round(time.perf_counter() - shape_started, 3)
            router.recording = False
    except Exception as exc:  # noqa: BLE001 - the UNet lane stays; the decode runs eager
        _log.warning("compiling the VAE decode failed; it stays eager", exc_info=True,
                     extra={"shapes": [str(s) for s in settings.shapes]})
        _restore_layout(vae)
        return {"compiled": False, "error": _error(exc)}
    setattr(vae, DECODE_ATTR, router)
    return {"compiled": True, "compileS": round(time.perf_counter() - started, 3), "warmUpS": per_shape,
            "signatures": len(router.signatures)}


def _restore_layout(module: Any) -> None:
    try:
        _channels_last(module, False)
    except Exception:  # noqa: BLE001 - a layout is no reason to fail the load
        _log.exception("restoring the memory format failed")


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


@contextmanager
def _counted_as_preparation() -> Iterator[None]:
    """Adds the graphs dynamo compiles inside to the preparations' tally (``serving_graphs``)."""
    global _prepared_graphs
    before = compiled_graphs()
    try:
        yield
    finally:
        _prepared_graphs += compiled_graphs() - before
