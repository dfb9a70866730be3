"""What a run reads besides the model: its init images and masks, its control images, its ControlNets.

Images come from paths the request parse already confined and checked (headers only); here they
are decoded and resized to the requested size. ControlNets are safetensors only, loaded offline.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dops_worker.inference.pipelines import check_controlnet
from dops_worker.inference.request import GenerateRequest
from dops_worker.protocol.errors import ErrorCode, WorkerError, is_out_of_memory

_log = logging.getLogger("dops_worker.inference.inputs")


def load_inputs(request: GenerateRequest) -> dict[str, Any]:
    """Per image its init image and mask (``init_images``, ``masks``: a member's own, else the
    request's; empty for txt2img), and the shared control images, as PIL at the requested size."""
    from PIL import Image

    size = (request.width, request.height)
    sources = ([(m.init_image, m.mask) for m in request.members] if request.members
               else [(request.init_image, request.mask)])
    init_images, masks = [], []
    for init_image, mask in sources:
        if init_image is not None:
            with Image.open(init_image.path) as image:
                init_images.append(image.convert("RGB").resize(size, Image.Resampling.LANCZOS))
        if mask is not None:
            with Image.open(mask.path) as image:
                # White repaints, black keeps; nearest keeps a hard mask hard.
                masks.append(image.convert("L").resize(size, Image.Resampling.NEAREST))
    if not request.members:  # the one image for every image of the batch
        init_images, masks = init_images * request.batch_count, masks * request.batch_count
    inputs: dict[str, Any] = {"init_images": init_images, "masks": masks}
    controls = []
    for spec in request.controlnets:
        with Image.open(spec.image) as image:
            # The img2img/inpaint ControlNet pipelines size hints by the init image, not width/height.
            controls.append(image.convert("RGB").resize(size, Image.Resampling.LANCZOS))
    inputs["controls"] = controls
    return inputs


def load_controlnets(pipe: Any, request: GenerateRequest, device: Any,
                     loader: Callable[[Path], Any] | None = None) -> list[Any]:
    """The request's ControlNets through ``loader`` (default: ``default_controlnet_loader``).
    Raises WorkerError FAILED_PRECONDITION naming ``controlnets[i].path`` for one that does not
    load or is for another base; an out-of-memory error as it is."""
    models = []
    for index, spec in enumerate(request.controlnets):
        field_name = f"controlnets[{index}].path"
        try:
            model = (loader or default_controlnet_loader(pipe, device))(spec.path)
        except WorkerError:
            raise
        except Exception as exc:
            if is_out_of_memory(exc):
                raise
            # The loader's message may quote the files; it goes to the log, the reply names the type only.
            _log.warning("loading a ControlNet failed", exc_info=True, extra={"field": field_name})
            raise WorkerError(ErrorCode.FAILED_PRECONDITION,
                              f"{field_name}: cannot load a ControlNet from it ({type(exc).__name__})",
                              details={"field": field_name, "reason": "not a loadable controlnet"}) from exc
        check_controlnet(pipe, model, index)
        models.append(model)
    return models


def default_controlnet_loader(pipe: Any, device: Any) -> Callable[[Path], Any]:
    """Diffusers folders and single ``.safetensors`` files, offline, in the UNet's dtype on
    ``device``; never a pickle (the request admits none, and use_safetensors bars diffusers' fallback)."""

    def load(path: Path) -> Any:
        from diffusers import ControlNetModel

        dtype = pipe.unet.dtype
        if path.is_file() and _is_folder_weights(path):
            # The registry lists a diffusers ControlNet folder's weights as a file; its config is beside it.
            path = path.parent
        if path.is_dir():
            model = ControlNetModel.from_pretrained(str(path), dtype=dtype, local_files_only=True, use_safetensors=True)
        elif path.suffix.lower() == ".safetensors":
            model = ControlNetModel.from_single_file(str(path), dtype=dtype, local_files_only=True)
        else:
            raise ValueError("a ControlNet file must be .safetensors")
        return model.to(device)

    return load


def _is_folder_weights(path: Path) -> bool:
    """True for the weights file of a diffusers ControlNet folder (its config.json beside it names
    ControlNetModel), which from_single_file cannot read without a hub download."""
    if not path.name.startswith("diffusion_pytorch_model") or path.suffix.lower() != ".safetensors":
        return False
    config = path.parent / "config.json"
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("_class_name") == "ControlNetModel"
    except (OSError, ValueError, AttributeError):
        return False
