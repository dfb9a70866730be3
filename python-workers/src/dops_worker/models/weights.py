"""Weight files, read without running anything they contain.

Pickle (.ckpt/.pt/.pth/.bin) can run arbitrary code when loaded, so it loads only where the node
allows it (``DOPS_ALLOW_UNSAFE_PICKLE``) and even then only through
``torch.load(weights_only=True)``, passed explicitly: the DirectML lane pins torch 2.4.1, whose
default is the unsafe one. Folders (diffusers pipelines, ControlNets, safety checkers) load with
``use_safetensors=True``, and one holding pickle weights only is refused before any file is opened;
a pipeline folder whose model components hold configs but no weights is refused before loading too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dops_worker.protocol.errors import ErrorCode, WorkerError, is_out_of_memory
from dops_worker.protocol.files import Roots, confined_files, invalid
from dops_worker.runtime.settings import ALLOW_UNSAFE_PICKLE_ENV, node_settings

from .safetensors_header import read_header

PICKLE_SUFFIXES = frozenset({".ckpt", ".pt", ".pth", ".bin"})
SAFETENSORS_SUFFIX = ".safetensors"


def is_pickle(path: Path) -> bool:
    return path.suffix.lower() in PICKLE_SUFFIXES


def require_pickle_allowed(path: Path, field_name: str) -> None:
    """FAILED_PRECONDITION for a pickle file unless the node allows pickle; nothing is read."""
    if is_pickle(path) and not node_settings().allow_unsafe_pickle:
        raise WorkerError(
            ErrorCode.FAILED_PRECONDITION,
            f"{field_name}: {path.name} is a pickle file, which can run arbitrary code when loaded; convert it "
            f"to .safetensors (loading pickle is a node setting, {ALLOW_UNSAFE_PICKLE_ENV}, off on this node)",
            details={"field": field_name, "reason": "pickle not allowed on this node",
                     "setting": ALLOW_UNSAFE_PICKLE_ENV})


def read_weights(path: Path, field_name: str = "path") -> dict[str, Any]:
    """Every tensor into CPU memory (no mmap left open): a ``.safetensors`` file, or a pickle the
    node allows, loaded weights-only. A pickle's top level may be a dict holding other values
    (Lightning's ``global_step``); callers take the tensors they need. Throws FAILED_PRECONDITION
    (pickle not allowed), INVALID_ARGUMENT (not a safetensors file, or a pickle naming objects)."""
    if is_pickle(path):
        require_pickle_allowed(path, field_name)
        return _read_pickle(path, field_name)
    from safetensors import safe_open

    read_header(path, field_name)  # its own errors for damaged files, quoting nothing of the file
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        return {name: handle.get_tensor(name).clone() for name in handle.keys()}


def _read_pickle(path: Path, field_name: str) -> dict[str, Any]:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        if is_out_of_memory(exc):
            raise
        # torch's message names the refused global, i.e. quotes the file: the reply does not.
        raise invalid(field_name, "is not a weights-only pickle (it holds Python objects, not just tensors); "
                                  "convert it to .safetensors") from exc
    if not isinstance(state, dict):
        raise invalid(field_name, "is not a state dict")
    return state


def require_safetensors_folder(folder: Path, roots: Roots, field_name: str) -> None:
    """For a model folder (already confined): every file in it stays under ``roots`` (links
    resolved), and no subfolder holds pickle weights without safetensors beside them. Throws
    INVALID_ARGUMENT (a link out) or FAILED_PRECONDITION naming the first pickle-only file."""
    files = confined_files(folder, roots, field_name)
    with_safetensors = {f.parent for f in files if f.suffix.lower() == SAFETENSORS_SUFFIX}
    for file in sorted(files):
        if is_pickle(file) and file.parent not in with_safetensors:
            name = file.relative_to(folder)
            raise WorkerError(
                ErrorCode.FAILED_PRECONDITION,
                f"{field_name}: {name} holds pickle weights only (no .safetensors beside it); pickle can run "
                "arbitrary code when loaded, so model folders load safetensors only",
                details={"field": field_name, "reason": "model folder holds pickle weights only", "file": str(name)})


def require_component_weights(folder: Path, field_name: str) -> None:
    """For a diffusers pipeline folder (already checked by ``require_safetensors_folder``): every
    model component (a subfolder holding ``config.json``: unet, vae, text_encoder, ...) holds a
    ``.safetensors`` file, which is all ``use_safetensors=True`` loads. Schedulers and tokenizers
    have no ``config.json`` and no weights. Throws FAILED_PRECONDITION naming the first component
    without weights, where diffusers would fail with an OSError deep in the load."""
    for component in sorted(p for p in folder.iterdir() if p.is_dir()):
        if not (component / "config.json").is_file():
            continue
        if not any(f.suffix.lower() == SAFETENSORS_SUFFIX and f.is_file() for f in component.iterdir()):
            raise WorkerError(
                ErrorCode.FAILED_PRECONDITION,
                f"{field_name}: {component.name}: no weights (config.json without a .safetensors file) in "
                f"{folder.name}; the folder holds configs only",
                details={"field": field_name, "reason": "model folder component holds no weights",
                         "component": component.name})
