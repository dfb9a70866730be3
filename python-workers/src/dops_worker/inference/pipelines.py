"""The right diffusers pipeline for mode × base × ControlNet, from an already-loaded model.

Pipelines are assembled with the constructor from the loaded pipeline's components, so no
weights are read or copied. Not ``Pipeline.from_pipe``: it ends with ``.to(dtype=float32)``
unless told otherwise, which would cast (and double) a shared fp16 model.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from dops_worker.inference.conditioning import max_clip_skip
from dops_worker.inference.request import GenerateRequest, Mode, RequestLimits
from dops_worker.protocol.errors import ErrorCode, WorkerError

Base = Literal["sd15", "sdxl"]

# (base, mode, with ControlNet) → diffusers class name.
PIPELINE_CLASSES: dict[tuple[Base, Mode, bool], str] = {
    ("sd15", "txt2img", False): "StableDiffusionPipeline",
    ("sd15", "img2img", False): "StableDiffusionImg2ImgPipeline",
    ("sd15", "inpaint", False): "StableDiffusionInpaintPipeline",
    ("sd15", "txt2img", True): "StableDiffusionControlNetPipeline",
    ("sd15", "img2img", True): "StableDiffusionControlNetImg2ImgPipeline",
    ("sd15", "inpaint", True): "StableDiffusionControlNetInpaintPipeline",
    ("sdxl", "txt2img", False): "StableDiffusionXLPipeline",
    ("sdxl", "img2img", False): "StableDiffusionXLImg2ImgPipeline",
    ("sdxl", "inpaint", False): "StableDiffusionXLInpaintPipeline",
    ("sdxl", "txt2img", True): "StableDiffusionXLControlNetPipeline",
    ("sdxl", "img2img", True): "StableDiffusionXLControlNetImg2ImgPipeline",
    ("sdxl", "inpaint", True): "StableDiffusionXLControlNetInpaintPipeline",
}

# An inpainting UNet takes latents (4) + mask (1) + masked-image latents (4).
_INPAINT_UNET_CHANNELS = 9


@dataclass(frozen=True)
class ModelTraits:
    base: Base
    inpaint_unet: bool
    cross_attention_dim: int
    vae_scale_factor: int
    native_size: int


def model_traits(pipe: Any) -> ModelTraits:
    """What the request validation and the assembly need to know about a loaded pipeline."""
    unet = pipe.unet
    base: Base = "sdxl" if getattr(pipe, "text_encoder_2", None) is not None else "sd15"
    vae_scale_factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    sample_size = unet.config.sample_size
    sample_size = sample_size[0] if isinstance(sample_size, (list, tuple)) else sample_size
    return ModelTraits(
        base=base,
        inpaint_unet=unet.config.in_channels == _INPAINT_UNET_CHANNELS,
        cross_attention_dim=unet.config.cross_attention_dim,
        vae_scale_factor=vae_scale_factor,
        native_size=int(sample_size) * vae_scale_factor,
    )


def limits_for_pipeline(pipe: Any, **overrides: Any) -> RequestLimits:
    """RequestLimits for this model: the deepest clip skip its text encoders have, and a minimum
    size of 64 — or half the native size for test-sized models (native below 128)."""
    traits = model_traits(pipe)
    values: dict[str, Any] = {
        "min_size": 64 if traits.native_size >= 128 else max(8, traits.native_size // 2),
        "max_clip_skip": max_clip_skip(pipe),
    }
    values.update(overrides)
    return RequestLimits(**values)


def capabilities(pipe: Any, limits: RequestLimits) -> dict[str, Any]:
    """What ``inference.capabilities`` reports for one loaded model."""
    from dops_worker.inference.schedulers import scheduler_names

    traits = model_traits(pipe)
    modes = ["txt2img", "img2img", "inpaint"]
    return {
        "base": traits.base,
        "modes": modes,
        "inpaintModel": traits.inpaint_unet,
        "pipelines": sorted({
            name for (base, _mode, _cn), name in PIPELINE_CLASSES.items() if base == traits.base
        }),
        "schedulers": scheduler_names(),
        "size": {"min": limits.min_size, "max": limits.max_size, "multiple": limits.size_multiple,
                 "native": traits.native_size},
        "steps": {"min": 1, "max": limits.max_steps},
        "cfgScale": {"min": 0, "max": limits.max_cfg_scale},
        "batchCount": {"min": 1, "max": limits.max_batch_count},
        "maxPromptTokens": 0,  # no token limit: any length is encoded in chunks of 75
        "maxPromptChars": limits.max_prompt_chars,
        "clipSkip": {"min": 1, "max": limits.max_clip_skip},
        "maxLoras": limits.max_loras,
        "maxControlnets": limits.max_controlnets,
    }


def check_preconditions(pipe: Any, request: GenerateRequest) -> None:
    """Raises FAILED_PRECONDITION (field ``mode``) for inpaint on a non-inpaint model unless
    ``allowInpaintFallback`` (then the model inpaints by blending latents under the mask)."""
    if request.mode == "inpaint" and not model_traits(pipe).inpaint_unet and not request.allow_inpaint_fallback:
        raise WorkerError(
            ErrorCode.FAILED_PRECONDITION,
            "the model is not an inpainting model; set allowInpaintFallback to inpaint with it anyway",
            details={"field": "mode", "reason": "model is not an inpainting model"},
        )


def check_controlnet(pipe: Any, controlnet: Any, index: int) -> None:
    """Raises FAILED_PRECONDITION (field ``controlnets[i].path``) for a ControlNet of another base."""
    traits = model_traits(pipe)
    config = controlnet.config
    controlnet_base: Base = "sdxl" if config.get("addition_embed_type") == "text_time" else "sd15"
    if controlnet_base != traits.base or config.get("cross_attention_dim") != traits.cross_attention_dim:
        raise WorkerError(
            ErrorCode.FAILED_PRECONDITION,
            f"controlnets[{index}] is for {controlnet_base} "
            f"(cross-attention {config.get('cross_attention_dim')}) but the model is {traits.base} "
            f"(cross-attention {traits.cross_attention_dim})",
            details={"field": f"controlnets[{index}].path", "reason": "controlnet base does not match the model"},
        )


def assemble_pipeline(pipe: Any, mode: Mode, scheduler: Any, controlnets: Sequence[Any] = ()) -> Any:
    """A pipeline of the right class sharing ``pipe``'s modules, with its own ``scheduler``.

    Several ControlNets become a MultiControlNet (the pipelines wrap a list themselves).
    """
    import diffusers

    traits = model_traits(pipe)
    class_name = PIPELINE_CLASSES[(traits.base, mode, bool(controlnets))]
    pipeline_class = getattr(diffusers, class_name)
    parameters = inspect.signature(pipeline_class.__init__).parameters
    components = pipe.components
    kwargs: dict[str, Any] = {}
    for name, parameter in parameters.items():
        if name == "self":
            continue
        if name == "scheduler":
            kwargs[name] = scheduler
        elif name == "controlnet":
            kwargs[name] = controlnets[0] if len(controlnets) == 1 else list(controlnets)
        elif name in components:
            kwargs[name] = components[name]
        elif name in pipe.config:
            kwargs[name] = pipe.config[name]  # requires_safety_checker, force_zeros_for_empty_prompt, ...
        elif parameter.default is inspect.Parameter.empty:
            kwargs[name] = None  # optional module the loaded model lacks (safety checker, ...)
    if "requires_safety_checker" in parameters and kwargs.get("safety_checker") is None:
        kwargs["requires_safety_checker"] = False  # safety checking is the postprocessing stage's job
    assembled = pipeline_class(**kwargs)
    assembled.set_progress_bar_config(disable=True)
    return assembled
