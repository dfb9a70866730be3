"""The worker's JSON-RPC methods; importing this package registers them (docs/worker-protocol.md).

Method modules import torch and diffusers lazily, inside the handlers, so registering them all
keeps `initialize` fast for workers that never generate (device, memory services).
"""

from dops_worker.inference import methods as _inference  # noqa: F401
from dops_worker.models import methods as _models  # noqa: F401
from dops_worker.postprocessing import methods as _postprocessing  # noqa: F401
from dops_worker.runtime.methods import device, diagnostics, lifecycle, memory  # noqa: F401
