"""``postprocess.run`` on the worker's method registry.

Roots are node settings (``runtime.settings``): images are read under ``DOPS_INPUT_ROOT`` or
``DOPS_ARTIFACT_ROOT`` (a workflow stage reads the previous stage's output) and written only
under ``DOPS_ARTIFACT_ROOT``; models come only from ``DOPS_MODEL_ROOTS`` (the service confines
them too, but the worker trusts no caller with its disk).
"""

from __future__ import annotations

from typing import Any

from dops_worker.postprocessing.models import ModelCache
from dops_worker.postprocessing.operations import Hooks, run
from dops_worker.postprocessing.request import parse_postprocess_request
from dops_worker.runtime.context import RequestContext
from dops_worker.runtime.registry import method
from dops_worker.runtime.settings import node_settings

MODELS = ModelCache()


@method("postprocess.run")
def postprocess_run(params: Any, ctx: RequestContext) -> dict[str, Any]:
    """Validates everything before any work, then runs one operation; see operations.run."""
    node = node_settings()
    request = parse_postprocess_request(params, input_roots=node.input_roots, artifact_roots=node.artifact_roots,
                                        model_roots=node.model_roots)
    backend = ctx.session.backend
    assert backend is not None  # requires_init
    hooks = Hooks(progress=ctx.progress, raise_if_cancelled=ctx.token.raise_if_cancelled)
    result = run(request, MODELS, backend.torch_device, hooks)
    return {"operation": request.operation, **result}
