"""Node settings: what the operator decides for every request on this node, read from the
environment once when the worker starts. A request can never change them (DESIGN §1 Trust).

- ``DOPS_INPUT_ROOT``: where request images (init images, masks, control images) are read.
  Default ``<tmp>/dops-artifacts``.
- ``DOPS_ARTIFACT_ROOT``: where the worker writes images (owner-only: 0600 files in 0700
  folders). Default: the input root. Postprocessing also reads its input image here (a workflow
  stage reads the previous stage's output).
- ``DOPS_MODEL_ROOTS``: ``os.pathsep``-separated folders that every model path of a request
  (checkpoint, config folder, LoRA, ControlNet, upscaler, face restorer, safety checker) must lie
  in. Unset or empty: every model path is refused.
- ``DOPS_ALLOW_UNSAFE_PICKLE``: ``1`` or ``true`` lets pickle weight files (.ckpt/.pt/.pth/.bin)
  load — always through ``torch.load(weights_only=True)``. Default off; on, the worker logs a
  warning at start.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dops_worker.protocol.files import Roots

ALLOW_UNSAFE_PICKLE_ENV = "DOPS_ALLOW_UNSAFE_PICKLE"
_TRUE = frozenset({"1", "true"})
_log = logging.getLogger("dops_worker.settings")


@dataclass(frozen=True)
class NodeSettings:
    input_roots: Roots
    artifact_roots: Roots
    model_roots: Roots
    allow_unsafe_pickle: bool = False


def read_node_settings(env: Mapping[str, str] = os.environ) -> NodeSettings:
    default = Path(tempfile.gettempdir()) / "dops-artifacts"
    input_root = Path(env.get("DOPS_INPUT_ROOT") or default)
    artifact_root = Path(env.get("DOPS_ARTIFACT_ROOT") or input_root)
    model_roots = tuple(Path(p) for p in (env.get("DOPS_MODEL_ROOTS") or "").split(os.pathsep) if p)
    return NodeSettings(
        input_roots=Roots("the input root (DOPS_INPUT_ROOT)", (input_root,)),
        artifact_roots=Roots("the artifact root (DOPS_ARTIFACT_ROOT)", (artifact_root,)),
        model_roots=Roots("the model roots (DOPS_MODEL_ROOTS)", model_roots),
        allow_unsafe_pickle=env.get(ALLOW_UNSAFE_PICKLE_ENV, "").strip().lower() in _TRUE,
    )


_current: NodeSettings | None = None


def node_settings() -> NodeSettings:
    """This node's settings: those ``configure_node_settings`` set at start, else the environment's, read once."""
    global _current
    if _current is None:
        _current = read_node_settings()
    return _current


def configure_node_settings(settings: NodeSettings | None = None) -> NodeSettings:
    """Fixes the settings (default: from the environment) and warns loudly when pickle is allowed."""
    global _current
    _current = settings or read_node_settings()
    if _current.allow_unsafe_pickle:
        _log.warning(f"UNSAFE: {ALLOW_UNSAFE_PICKLE_ENV} is on: this worker loads pickle weight files "
                     "(.ckpt/.pt/.pth/.bin) from its model roots; torch.load(weights_only=True) still refuses "
                     "any that name Python objects, but prefer .safetensors",
                     extra={"setting": ALLOW_UNSAFE_PICKLE_ENV})
    return _current
