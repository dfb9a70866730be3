"""Postprocessing models, loaded on first use and kept per path (a few at a time).

Upscalers and face restorers are whatever spandrel identifies from a state dict the worker reads
itself (``models.weights.read_weights``: safetensors, or a weights-only pickle where the node
allows pickle) — never spandrel's ``load_from_file``, whose ``.pt`` path runs ``torch.jit.load``
and whose pickle path leaves ``weights_only`` to the torch version; safety checkers are diffusers ``StableDiffusionSafetyChecker`` folders (config.json +
model.safetensors), loaded offline with their CLIP image processor: the folder's
``preprocessor_config.json``, else the one shipped in ``configs/safety_checker`` (CompVis'
CLIP ViT-L/14 settings) sized to the checker's vision tower.
A changed file (size or mtime) is loaded again. ``sha256`` hashes a model file (for the image's
metadata) once per version of it: a read of a file that was just read to load it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dops_worker.protocol.errors import ErrorCode, WorkerError

_log = logging.getLogger("dops_worker.postprocessing.models")
SHIPPED_PREPROCESSOR = Path(__file__).resolve().parent / "configs" / "safety_checker"
MAX_CACHED = 4
FACE_PURPOSES = frozenset({"FaceSR"})
UPSCALE_PURPOSES = frozenset({"SR", "Restoration"})


@dataclass
class SafetyChecker:
    model: Any
    processor: Any


class ModelCache:
    def __init__(self, max_cached: int = MAX_CACHED) -> None:
        self._max = max_cached
        self._entries: OrderedDict[tuple[str, str], tuple[tuple[int, int], Any]] = OrderedDict()
        self._digests: dict[str, tuple[tuple[int, int], str]] = {}
        self._lock = threading.Lock()

    def image_model(self, path: Path, device: str, field: str, *, face: bool) -> Any:
        """A spandrel ImageModelDescriptor on ``device`` in eval mode; INVALID_ARGUMENT naming
        ``field`` when spandrel does not know the file or it is the wrong kind of model."""
        descriptor = self._get(path, device, lambda: _load_image_model(path, device, field))
        purpose = getattr(descriptor, "purpose", None)
        if face and purpose not in FACE_PURPOSES:
            raise _invalid(field, f"is a {descriptor.architecture.id} model ({purpose}), not a face restoration model")
        if not face and purpose in FACE_PURPOSES:
            raise _invalid(field, f"is a face restoration model ({descriptor.architecture.id}); use faceRestore")
        return descriptor

    def safety_checker(self, path: Path, device: str, field: str) -> SafetyChecker:
        return self._get(path, device, lambda: _load_safety_checker(path, device, field))

    def sha256(self, path: Path) -> str:
        """The hex sha256 of a model file (or of a safety checker folder's model.safetensors).
        Raises OSError when it cannot be read."""
        target = path / "model.safetensors" if path.is_dir() else path
        stamp = _stamp(path)
        with self._lock:
            entry = self._digests.get(str(target))
        if entry is not None and entry[0] == stamp:
            return entry[1]
        with target.open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        with self._lock:
            self._digests[str(target)] = (stamp, digest)
        return digest

    def _get(self, path: Path, device: str, load: Any) -> Any:
        key = (str(path), device)
        stamp = _stamp(path)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] == stamp:
                self._entries.move_to_end(key)
                return entry[1]
            value = load()
            self._entries[key] = (stamp, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
            return value


def _stamp(path: Path) -> tuple[int, int]:
    target = path / "model.safetensors" if path.is_dir() else path
    stat = target.stat()
    return stat.st_size, stat.st_mtime_ns


def _invalid(field: str, reason: str) -> WorkerError:
    return WorkerError(ErrorCode.INVALID_ARGUMENT, f"{field}: {reason}", details={"field": field, "reason": reason})


def _load_image_model(path: Path, device: str, field: str) -> Any:
    import torch
    from spandrel import ImageModelDescriptor, ModelLoader, UnsupportedModelError

    from dops_worker.models.weights import read_weights

    state = read_weights(path, field)
    try:
        descriptor = ModelLoader(torch.device("cpu")).load_from_state_dict(state)
    except UnsupportedModelError as exc:
        raise _invalid(field, "is no architecture spandrel knows") from exc
    except (KeyError, RuntimeError, ValueError) as exc:
        # spandrel's message quotes the file's tensor names and shapes: to the log, not the reply.
        _log.warning("spandrel could not load a model", exc_info=True, extra={"field": field})
        raise _invalid(field, f"could not be loaded by spandrel ({type(exc).__name__})") from exc
    if not isinstance(descriptor, ImageModelDescriptor):
        raise _invalid(field, f"is a {descriptor.architecture.id} model, not a single-image model")
    return descriptor.to(torch.device(device)).eval()


def _load_safety_checker(path: Path, device: str, field: str) -> SafetyChecker:
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPImageProcessor

    try:
        model = StableDiffusionSafetyChecker.from_pretrained(str(path), local_files_only=True, use_safetensors=True)
        if (path / "preprocessor_config.json").is_file():
            processor = CLIPImageProcessor.from_pretrained(str(path), local_files_only=True)
        else:
            # CLIP's mean/std and resampling, at the input size this checker's vision tower takes.
            side = int(model.config.vision_config.image_size)
            processor = CLIPImageProcessor.from_pretrained(
                str(SHIPPED_PREPROCESSOR), local_files_only=True, size={"shortest_edge": side},
                crop_size={"height": side, "width": side})
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        _log.warning("loading a safety checker failed", exc_info=True, extra={"field": field})
        raise _invalid(field, f"could not be loaded as a StableDiffusionSafetyChecker ({type(exc).__name__})") from exc
    return SafetyChecker(model.to(device).eval(), processor)
