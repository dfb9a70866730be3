"""Build diffusers pipelines from single-file checkpoints or diffusers folders, offline.

A single file is read once into a CPU state dict (``read_s``), then each component is converted
and built from the config folder chosen by identification (``build_s``): UNet and VAE through
diffusers' ``from_single_file(state, config=<folder>, local_files_only=True)``, text encoders
through diffusers' own LDM→transformers converter, scheduler from the folder, tokenizers from the
CLIP BPE files shipped in ``dops_worker.configs``. Real and tiny checkpoints take the same path;
only the config root differs (``config_dir``).
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import torch

from dops_worker.configs import CLIP_TOKENIZER_DIR, CONFIG_ROOT
from dops_worker.protocol.errors import ErrorCode, WorkerError
from dops_worker.runtime.settings import node_settings

from .identify import Identification, identify_file, identify_tensors, require_config
from .weights import is_pickle, read_weights, require_component_weights, require_safetensors_folder

LoadKind = Literal["auto", "checkpoint", "diffusers"]
# SDXL's second tokenizer (OpenCLIP-G) pads with "!" (id 0) where CLIP-L pads with <|endoftext|>.
PAD_TOKEN_BY_COMPONENT = {"tokenizer": None, "tokenizer_2": "!"}


@dataclass(frozen=True)
class BuiltPipeline:
    pipeline: Any
    identification: Identification
    read_s: float
    build_s: float


@lru_cache(maxsize=4)
def clip_tokenizer(pad_token: str | None = None):
    """The shipped CLIP BPE tokenizer (49 408 tokens); ``pad_token`` overrides for SDXL's tokenizer_2."""
    from transformers import CLIPTokenizer

    extra = {"pad_token": pad_token} if pad_token else {}
    return CLIPTokenizer.from_pretrained(str(CLIP_TOKENIZER_DIR), local_files_only=True, **extra)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor into CPU memory. Pickle only where the node allows it, weights-only (see
    ``weights.read_weights``: FAILED_PRECONDITION / INVALID_ARGUMENT)."""
    state = read_weights(path)
    while isinstance(state.get("state_dict"), dict):  # Lightning nests the weights
        state = state["state_dict"]
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def build_from_state_dict(state: dict[str, torch.Tensor], config_folder: Path, *,
                          torch_dtype: torch.dtype = torch.float32):
    """Build the pipeline named by ``config_folder/model_index.json`` from an original-layout state dict."""
    import diffusers
    from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm
    from diffusers.models.modeling_utils import ModelMixin
    from diffusers.schedulers.scheduling_utils import SchedulerMixin
    from transformers import PreTrainedModel

    index = json.loads((config_folder / "model_index.json").read_text())
    pipeline_cls = getattr(diffusers, index["_class_name"])
    accepted = inspect.signature(pipeline_cls.__init__).parameters
    components: dict[str, Any] = {}
    for name, spec in index.items():
        if name.startswith("_") or name not in accepted:
            continue
        if not isinstance(spec, list):
            components[name] = spec  # pipeline flags: requires_safety_checker, force_zeros_for_empty_prompt…
            continue
        library, class_name = spec
        if class_name is None:
            components[name] = None
            continue
        cls = getattr(importlib.import_module(library), class_name)
        if name in PAD_TOKEN_BY_COMPONENT:
            components[name] = clip_tokenizer(PAD_TOKEN_BY_COMPONENT[name])
        elif issubclass(cls, SchedulerMixin):
            components[name] = cls.from_pretrained(str(config_folder), subfolder=name, local_files_only=True)
        elif issubclass(cls, ModelMixin):
            components[name] = cls.from_single_file(state, config=str(config_folder), subfolder=name,
                                                    local_files_only=True, torch_dtype=torch_dtype)
        elif issubclass(cls, PreTrainedModel):
            components[name] = create_diffusers_clip_model_from_ldm(
                cls, state, subfolder=name, config=str(config_folder), torch_dtype=torch_dtype,
                local_files_only=True)
        else:
            raise WorkerError(ErrorCode.UNSUPPORTED, f"{config_folder.name}: cannot build component {name} ({class_name})")
        _require_materialised(name, components[name], config_folder)
    return pipeline_cls(**components)


def _require_materialised(name: str, component: Any, config_folder: Path) -> None:
    """diffusers builds models on the meta device and fills them from the converted state dict; a
    tensor the conversion did not produce stays on meta silently (until inference fails far from the
    cause). Throws INVALID_ARGUMENT naming the component and the first missing tensors."""
    if not isinstance(component, torch.nn.Module):
        return
    missing = [key for key, tensor in [*component.named_parameters(), *component.named_buffers()]
               if tensor.device.type == "meta"]
    if missing:
        raise WorkerError(
            ErrorCode.INVALID_ARGUMENT,
            f"{name}: {len(missing)} tensors not in the checkpoint or not matching {config_folder.name}/{name} "
            f"(e.g. {', '.join(missing[:3])})",
            details={"component": name, "config": config_folder.name, "missing": missing[:20]})


def resolve_config_folder(identification: Identification, path: Path, config_dir: str | os.PathLike[str] | None) -> Path:
    """``config_dir`` is a root holding folders named like the shipped ones (sd15, sdxl-base, …), or one such folder.
    In a root, a folder named after the checkpoint's file (``<stem>/``) comes first: the config of
    that one model, whose widths differ from others of its kind (as A1111's ``<stem>.yaml``)."""
    name = require_config(identification, path)
    root = Path(config_dir) if config_dir is not None else CONFIG_ROOT
    if (root / "model_index.json").is_file():
        return root
    own = root / path.stem
    if (own / "model_index.json").is_file():
        return own
    folder = root / name
    if not (folder / "model_index.json").is_file():
        raise WorkerError(ErrorCode.NOT_FOUND, f"no config folder {folder} for {path.name} ({name})",
                          details={"field": "config_dir"})
    return folder


def build_pipeline(path: str | os.PathLike[str], *, kind: LoadKind = "auto",
                   config_dir: str | os.PathLike[str] | None = None,
                   torch_dtype: torch.dtype = torch.float32) -> BuiltPipeline:
    """Read and build on CPU. Throws WorkerError: NOT_FOUND, INVALID_ARGUMENT (damaged file),
    FAILED_PRECONDITION (pickle where the node does not allow it, a pickle-only folder, a folder
    whose model components hold no weights),
    UNSUPPORTED (no config for what it is)."""
    path = Path(path)
    if not path.exists():
        raise WorkerError(ErrorCode.NOT_FOUND, f"{path}: no such file or folder", details={"field": "path"})
    if kind not in ("auto", "checkpoint", "diffusers"):
        raise WorkerError(ErrorCode.INVALID_ARGUMENT, f"kind must be auto, checkpoint or diffusers, not {kind!r}",
                          details={"field": "kind"})
    if path.is_dir():
        if kind == "checkpoint":
            raise WorkerError(ErrorCode.INVALID_ARGUMENT, f"{path} is a folder, not a checkpoint", details={"field": "kind"})
        return _build_folder(path, torch_dtype)
    if kind == "diffusers":
        raise WorkerError(ErrorCode.INVALID_ARGUMENT, f"{path} is a file, not a diffusers folder", details={"field": "kind"})
    started = time.perf_counter()
    if is_pickle(path):
        state = read_state_dict(path)
        identification = identify_tensors({k: tuple(v.shape) for k, v in state.items()})
    else:
        identification = identify_file(path)
        if identification.kind != "checkpoint":
            raise WorkerError(ErrorCode.INVALID_ARGUMENT,
                              f"{path.name} is a {identification.kind}, not a pipeline checkpoint",
                              details={"field": "path", "kind": identification.kind})
        config_folder = resolve_config_folder(identification, path, config_dir)  # fail before reading GBs
        state = read_state_dict(path)
    read_s = time.perf_counter() - started
    config_folder = resolve_config_folder(identification, path, config_dir)
    started = time.perf_counter()
    pipeline = build_from_state_dict(state, config_folder, torch_dtype=torch_dtype)
    del state
    return BuiltPipeline(pipeline, identification, read_s, time.perf_counter() - started)


def _build_folder(path: Path, torch_dtype: torch.dtype) -> BuiltPipeline:
    from diffusers import DiffusionPipeline

    # First: no file of the folder is read (identification reads its configs) before its links are checked.
    require_safetensors_folder(path, node_settings().model_roots, "path")
    identification = identify_file(path)
    if identification.kind != "diffusers":
        raise WorkerError(ErrorCode.INVALID_ARGUMENT, f"{path} is not a diffusers pipeline folder",
                          details={"field": "path"})
    require_component_weights(path, "path")
    started = time.perf_counter()
    # diffusers reads and builds a folder in one step; it all counts as build_s. use_safetensors:
    # never its pickle fallback, whatever the folder holds.
    pipeline = DiffusionPipeline.from_pretrained(str(path), local_files_only=True, dtype=torch_dtype,
                                                 use_safetensors=True)
    return BuiltPipeline(pipeline, identification, 0.0, time.perf_counter() - started)
