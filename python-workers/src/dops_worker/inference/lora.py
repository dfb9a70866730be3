"""LoRAs for one request: load (kohya or peft keys), weight, and remove them afterwards.

diffusers' ``load_lora_weights`` converts kohya/A1111 keys itself; it needs ``peft`` installed.
The LoRA layers land in the shared UNet/text encoders, so they are always unloaded after the
request, whatever happened, to leave the next request a clean model.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

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
    names: list[str] = []
    try:
        for index, lora in enumerate(loras):
            name = f"{ADAPTER_PREFIX}{index}"
            _load_one(pipe, lora, name, index)
            names.append(name)
        pipe.set_adapters(names, adapter_weights=[lora.weight for lora in loras])
        yield names
    finally:
        if names or _has_adapters(pipe):
            remove_loras(pipe)


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
