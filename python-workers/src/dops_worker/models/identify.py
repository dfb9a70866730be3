"""Identify a model file from tensor names and shapes alone (no weights read).

Checkpoint rules (the facts diffusers' ``infer_diffusers_model_type`` and the original repos use):

- text encoders name the family: ``cond_stage_model.transformer.text_model.*`` (CLIP-L) → SD 1.x;
  ``cond_stage_model.model.*`` (OpenCLIP-H) → SD 2.x; ``conditioner.embedders.1.model.*`` next to
  ``conditioner.embedders.0.transformer.*`` → SDXL base; ``conditioner.embedders.0.model.*`` alone →
  SDXL refiner. Without text encoders the cross-attention width decides (768 / 1024 / 2048 / 1280,
  second dim of ``…attn2.to_k.weight``).
- the UNet's first conv gives the variant: in-channels 4 normal, 9 inpaint, 5 depth.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from dops_worker.protocol.errors import ErrorCode, WorkerError

from .safetensors_header import read_header
from .weights import is_pickle

Kind = Literal["checkpoint", "diffusers", "lora", "controlnet", "vae", "upscaler", "unknown"]
UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"
VARIANT_BY_IN_CHANNELS = {4: "normal", 9: "inpaint", 5: "depth"}
BASE_BY_CONTEXT = {768: "sd15", 1024: "sd2", 2048: "sdxl", 1280: "sdxl-refiner"}
CONFIG_BY_BASE_VARIANT = {("sd15", "normal"): "sd15", ("sd15", "inpaint"): "sd15-inpaint",
                          ("sdxl", "normal"): "sdxl-base", ("sdxl-refiner", "normal"): "sdxl-refiner"}


@dataclass(frozen=True)
class Identification:
    """What a file is. ``config_name`` names the config folder that loads it, None when none ships."""

    kind: Kind
    base: str | None = None
    variant: str | None = None
    config_name: str | None = None
    details: dict[str, object] = field(default_factory=dict)


def identify_file(path: str | os.PathLike[str]) -> Identification:
    """Identify a ``.safetensors`` file (header only) or a diffusers folder; throws WorkerError on a bad file."""
    path = Path(path)
    if path.is_dir():
        return identify_folder(path)
    if is_pickle(path):
        # Pickle: naming what it is would mean running it. The loader decides whether to.
        return Identification("checkpoint", details={"format": "pickle"})
    header = read_header(path)
    return identify_tensors(header.shapes, header.metadata)


def identify_folder(path: Path) -> Identification:
    index_file = path / "model_index.json"
    if index_file.is_file():
        index = _read_json(index_file, path)
        unet_config = path / "unet" / "config.json"
        config = _read_json(unet_config, path) if unet_config.is_file() else {}
        base = _base_from_unet_config(config, index) or _base_from_text_encoder(path)
        variant = VARIANT_BY_IN_CHANNELS.get(config.get("in_channels", 4), "unknown")
        return Identification("diffusers", base, variant, None, {"pipeline": index.get("_class_name")})
    config_file = path / "config.json"
    config = _read_json(config_file, path) if config_file.is_file() else {}
    if config.get("_class_name") == "ControlNetModel":
        return Identification("controlnet", BASE_BY_CONTEXT.get(config.get("cross_attention_dim"), None), "normal")
    return Identification("unknown", details={"reason": "folder has neither model_index.json nor a known config"})


def _read_json(file: Path, folder: Path) -> dict:
    """A config file as a JSON object; INVALID_ARGUMENT otherwise, without quoting the file (the
    decoder's message can carry its bytes)."""
    try:
        value = json.loads(file.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _not_json(file, folder) from error
    if not isinstance(value, dict):
        raise _not_json(file, folder)
    return value


def _not_json(file: Path, folder: Path) -> WorkerError:
    name = file.relative_to(folder)
    return WorkerError(ErrorCode.INVALID_ARGUMENT, f"path: {name} in {folder.name} is not a JSON object",
                       details={"field": "path", "reason": "config file is not a JSON object", "file": str(name)})


def _base_from_unet_config(config: dict, index: dict) -> str | None:
    if index.get("_class_name", "").startswith("StableDiffusionXL"):
        return "sdxl-refiner" if index.get("text_encoder", [None])[0] is None else "sdxl"
    context = config.get("cross_attention_dim")
    return BASE_BY_CONTEXT.get(context) if isinstance(context, int) else None


def _base_from_text_encoder(path: Path) -> str | None:
    # Width-independent: SD 1.x uses OpenAI CLIP-L (quick_gelu), SD 2.x OpenCLIP-H (gelu).
    config_file = path / "text_encoder" / "config.json"
    if not config_file.is_file():
        return None
    return "sd15" if _read_json(config_file, path).get("hidden_act") == "quick_gelu" else "sd2"


def identify_tensors(shapes: dict[str, tuple[int, ...]], metadata: dict[str, str] | None = None) -> Identification:
    """Identify from ``{tensor name: shape}`` (a safetensors header or a loaded state dict)."""
    metadata = metadata or {}
    names = shapes.keys()
    if UNET_IN in shapes:
        return _identify_checkpoint(shapes)
    if any(".lora_down.weight" in n or ".lora_A.weight" in n or ".lora.down.weight" in n for n in names):
        style = "kohya" if any(n.startswith(("lora_unet_", "lora_te")) for n in names) else "peft"
        return Identification("lora", _lora_base(shapes, metadata), style, None,
                              {"trigger": metadata.get("modelspec.trigger_phrase"),
                               "output_name": metadata.get("ss_output_name")})
    if any(n.startswith(("controlnet_cond_embedding.", "control_model.input_hint_block.")) for n in names):
        return Identification("controlnet", _context_base(shapes), "normal")
    if "encoder.conv_in.weight" in shapes and "decoder.conv_in.weight" in shapes:
        return Identification("vae", None, "normal", details={"latent_channels": shapes["decoder.conv_in.weight"][1]})
    if any(n in shapes for n in ("body.0.weight", "conv_first.weight", "model.0.weight")):
        # Upscaler families are many; spandrel names the architecture when it loads.
        return Identification("upscaler")
    return Identification("unknown")


def _identify_checkpoint(shapes: dict[str, tuple[int, ...]]) -> Identification:
    in_channels = shapes[UNET_IN][1]
    context = _context_width(shapes)
    names = shapes.keys()
    if any(n.startswith("conditioner.embedders.1.model.") for n in names):
        base = "sdxl"
    elif any(n.startswith("conditioner.embedders.0.model.") for n in names):
        base = "sdxl-refiner"
    elif any(n.startswith("cond_stage_model.transformer.") for n in names):
        base = "sd15"
    elif any(n.startswith("cond_stage_model.model.") for n in names):
        base = "sd2"
    else:
        base = BASE_BY_CONTEXT.get(context or -1)
    variant = VARIANT_BY_IN_CHANNELS.get(in_channels, "unknown")
    return Identification("checkpoint", base, variant, CONFIG_BY_BASE_VARIANT.get((base, variant)),
                          {"in_channels": in_channels, "context_dim": context,
                           "has_vae": any(n.startswith("first_stage_model.") for n in names)})


def _context_width(shapes: dict[str, tuple[int, ...]]) -> int | None:
    for name in sorted(shapes):
        if name.endswith("attn2.to_k.weight"):
            return shapes[name][1]
    return None


def _context_base(shapes: dict[str, tuple[int, ...]]) -> str | None:
    context = _context_width(shapes)
    return BASE_BY_CONTEXT.get(context) if context else None


def _lora_base(shapes: dict[str, tuple[int, ...]], metadata: dict[str, str]) -> str | None:
    declared = metadata.get("ss_base_model_version", "")
    if declared.startswith("sd_v1"):
        return "sd15"
    if declared.startswith("sdxl"):
        return "sdxl"
    if declared.startswith("sd_v2"):
        return "sd2"
    if any(n.startswith(("lora_te1_", "lora_te2_", "text_encoder_2.")) for n in shapes):
        return "sdxl"
    return None


def require_config(identification: Identification, path: Path) -> str:
    """The config name, or WorkerError UNSUPPORTED naming what was identified."""
    if identification.config_name is None:
        raise WorkerError(
            ErrorCode.UNSUPPORTED,
            f"{path.name}: identified as {identification.kind} base={identification.base} "
            f"variant={identification.variant}; no config ships for it",
            details={"field": "path", "base": identification.base, "variant": identification.variant})
    return identification.config_name
