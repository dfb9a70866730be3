"""LoRAs for one request: load (kohya or peft keys), weight, and remove them afterwards.

diffusers' ``load_lora_weights`` converts kohya/A1111 keys itself; it needs ``peft`` installed.
The LoRA layers land in the shared UNet/text encoders, so they are always unloaded after the
request, whatever happened, to leave the next request a clean model.

With a compiled lane (the request's ``pipe.unet`` is a compiled.UnetRouter) the UNet must keep
its module tree and its parameters, or the compiled graph recompiles (or fails, fullgraph): the
UNet's LoRAs are fused into its weights in place instead. The adapters are loaded and weighted
with PEFT on the eager UNet as above, the weights (and biases) of the layers they wrap are
cloned, ``fuse_lora`` adds each adapter's delta (its ``set_adapters`` weight is in PEFT's
scaling, which the merge uses) into those same tensors, and the UNet's LoRA layers are unloaded,
so the request runs a plain UNet — the same modules and parameter tensors the graph was compiled
for — with the LoRAs in its weights. After the request (or any failure) the clones are copied
back into the same tensors: bit for bit the weights before. Text-encoder LoRAs stay PEFT layers
(nothing there is compiled) and are unloaded after the request as without a lane. A fused UNet
computes ``(W + s·BA)x`` where PEFT computes ``Wx + s·B(Ax)``: the same up to rounding.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from dops_worker.inference.compiled import UnetRouter
from dops_worker.inference.request import LoraSpec
from dops_worker.protocol.errors import ErrorCode, WorkerError, is_out_of_memory

_log = logging.getLogger("dops_worker.inference.lora")
ADAPTER_PREFIX = "dops_lora_"


@contextmanager
def applied_loras(pipe: Any, loras: Sequence[LoraSpec]) -> Iterator[list[str]]:
    """Loads every LoRA as its own adapter with its weight; yields the adapter names.

    Raises FAILED_PRECONDITION (field ``loras[i].path``) for a file that is not a LoRA for this
    model. Unloads all of them on exit.
    """
    if not loras:
        yield []
        return
    router = getattr(pipe, "unet", None)
    if isinstance(router, UnetRouter):
        with _fused_into_unet(pipe, router, loras) as names:
            yield names
        return
    names: list[str] = []
    try:
        _load_weighted(pipe, loras, names)
        yield names
    finally:
        if names or _has_adapters(pipe):
            remove_loras(pipe)


@contextmanager
def _fused_into_unet(pipe: Any, router: UnetRouter, loras: Sequence[LoraSpec]) -> Iterator[list[str]]:
    """``applied_loras`` for a compiled lane: the UNet's LoRAs fused in place (see the module's
    doc), the text encoders' as PEFT layers; everything undone on exit, the UNet's weights
    restored to the same tensors."""
    unet = router.eager
    names: list[str] = []
    saved: list[tuple[Any, Any, Any]] = []
    # diffusers finds the UNet by its class (ModelMixin): while the adapters are loaded, weighted,
    # fused and removed, the pipeline holds the eager UNet itself.
    object.__setattr__(pipe, "unet", unet)
    try:
        _load_weighted(pipe, loras, names)
        saved = _save_wrapped_weights(unet)
        unet.fuse_lora(lora_scale=1.0, adapter_names=names)
        unet.unload_lora()
        object.__setattr__(pipe, "unet", router)
        yield names
    finally:
        object.__setattr__(pipe, "unet", unet)
        try:
            if names or _has_adapters(pipe):
                remove_loras(pipe)
        finally:
            _restore_weights(saved)
            object.__setattr__(pipe, "unet", router)


def _save_wrapped_weights(unet: Any) -> list[tuple[Any, Any, Any]]:
    """``(parameter, its data tensor, a copy)`` for the weight and bias of every layer a LoRA
    wraps in ``unet``: what fusing changes. The copy stays on the device unless it does not fit
    there (then in CPU memory)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    saved: list[tuple[Any, Any, Any]] = []
    seen: set[int] = set()
    for module in unet.modules():
        if not isinstance(module, BaseTunerLayer):
            continue
        base = module.get_base_layer()
        for name in ("weight", "bias"):
            parameter = getattr(base, name, None)
            if parameter is None or id(parameter) in seen:
                continue
            seen.add(id(parameter))
            data = parameter.data
            saved.append((parameter, data, _copy(data)))
    return saved


def _copy(tensor: Any) -> Any:
    try:
        return tensor.clone()
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
    return tensor.to("cpu", copy=True)


def _restore_weights(saved: Sequence[tuple[Any, Any, Any]]) -> None:
    """Copies every saved weight back into its own tensor (the one the parameter held when it was
    saved, which it holds again): the compiled graph reads the same storage as before."""
    import torch

    with torch.no_grad():
        for parameter, data, copy in saved:
            data.copy_(copy)
            if parameter.data_ptr() != data.data_ptr():  # a merge that replaced it (PEFT's safe_merge)
                parameter.data = data


def _load_weighted(pipe: Any, loras: Sequence[LoraSpec], names: list[str]) -> None:
    """Loads each LoRA as its own adapter (appending its name to ``names`` as soon as it is in, so
    the caller's cleanup sees it) and gives each its weight."""
    for index, lora in enumerate(loras):
        name = f"{ADAPTER_PREFIX}{index}"
        _load_one(pipe, lora, name, index)
        names.append(name)
    pipe.set_adapters(names, adapter_weights=[lora.weight for lora in loras])


def remove_loras(pipe: Any) -> None:
    """Removes every LoRA layer from the pipeline's modules; never raises."""
    try:
        pipe.unload_lora_weights()
    except Exception:  # noqa: BLE001 - a failed cleanup must not mask the request's own error
        _log.exception("unloading LoRAs failed")


def _has_adapters(pipe: Any) -> bool:
    try:
        return bool(pipe.get_list_adapters())
    except Exception:  # noqa: BLE001 - no peft layers at all
        return False


def _load_one(pipe: Any, lora: LoraSpec, name: str, index: int) -> None:
    from dops_worker.models.weights import read_weights

    field = f"loras[{index}].path"
    state_dict = read_weights(lora.path, field)  # diffusers gets tensors, never the file to unpickle
    try:
        pipe.load_lora_weights(state_dict, adapter_name=name)
    except Exception as exc:
        if isinstance(exc, WorkerError) or is_out_of_memory(exc):
            raise
        # diffusers' message quotes the file's tensor names: to the log, not the reply.
        _log.warning("loading a LoRA failed", exc_info=True, extra={"field": field})
        raise WorkerError(
            ErrorCode.FAILED_PRECONDITION,
            f"{field}: not a LoRA this model can load ({type(exc).__name__})",
            details={"field": field, "reason": "lora does not fit the model"},
        ) from exc
