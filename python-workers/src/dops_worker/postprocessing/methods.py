"""``postprocess.run`` on the worker's method registry.

Roots, resolved once at import: images are read under ``DOPS_INPUT_ROOT`` or
``DOPS_ARTIFACT_ROOT`` (a workflow stage reads the previous stage's output) and written only
under ``DOPS_ARTIFACT_ROOT`` (default: the input root, else ``<tmp>/dops-artifacts``).
Model paths are absolute; the service confines them to its model roots before they get here.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from dops_worker.postprocessing.models import ModelCache
from dops_worker.postprocessing.operations import Hooks, run
from dops_worker.postprocessing.request import parse_postprocess_request
from dops_worker.runtime.context import RequestContext
from dops_worker.runtime.registry import method


def _roots() -> tuple[Path, Path]:
    input_root = os.environ.get("DOPS_INPUT_ROOT")
    output_root = os.environ.get("DOPS_ARTIFACT_ROOT") or input_root
    default = Path(tempfile.gettempdir()) / "dops-artifacts"
    return Path(input_root or default), Path(output_root or default)


INPUT_ROOT, OUTPUT_ROOT = _roots()
MODELS = ModelCache()


@method("postprocess.run")
def postprocess_run(params: Any, ctx: RequestContext) -> dict[str, Any]:
    """Validates everything before any work, then runs one operation; see operations.run."""
    request = parse_postprocess_request(params, input_roots=[INPUT_ROOT, OUTPUT_ROOT], output_root=OUTPUT_ROOT)
    backend = ctx.session.backend
    assert backend is not None  # requires_init
    hooks = Hooks(progress=ctx.progress, raise_if_cancelled=ctx.token.raise_if_cancelled)
    result = run(request, MODELS, backend.torch_device, hooks)
    return {"operation": request.operation, **result}
