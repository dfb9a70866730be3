"""Cross-attention that ignores the padding of a batch of prompts of different lengths.

A dynamic batch stacks its members' prompt embeddings, so the shorter ones are padded to the
longest (conditioning.batch_conditioning). Unmasked, padding is keys that the softmax weighs and
the member's image changes (measured on the tiny test models: up to 8 levels of 255 for a
77-token prompt padded to 231); masked, each member's cross-attention sees only its own tokens,
as in its solo run. The UNet has an ``encoder_attention_mask`` for this, but the pipelines never
pass one and ControlNetModel has none, so the mask goes in one level down: each cross-attention
layer of the UNet and the ControlNets gets its processor wrapped for the duration of the call,
adding the bias diffusers itself makes from a mask (``(1 - mask) * -10000``: exactly zero weight
after the softmax in fp32 and fp16 alike).

The pipelines order the rows of a call ``[negative members..., positive members...]`` (without
CFG, or for a guess-mode ControlNet, one half only), so member ``row % members`` owns a row.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

PADDING_BIAS = -10000.0  # diffusers' own attention-mask bias


@contextmanager
def masked_padding(pipe: Any, token_lengths: Sequence[int]) -> Iterator[None]:
    """While inside, the cross-attention of ``pipe``'s UNet and ControlNets gives no weight to the
    keys at or after ``token_lengths[i]`` in member i's rows. Nothing happens for an empty
    ``token_lengths`` (every row uses the whole length). The processors are restored on exit."""
    if not token_lengths:
        yield
        return
    import torch

    lengths = torch.tensor(list(token_lengths))
    keys = torch.arange(int(lengths.max()))
    # (members, 1, keys): the shape Attention.prepare_attention_mask repeats over the heads.
    bias = torch.where(keys[None, :] < lengths[:, None], 0.0, PADDING_BIAS).unsqueeze(1)
    replaced: list[tuple[Any, Any]] = []
    try:
        for layer in _cross_attention_layers(pipe):
            replaced.append((layer, layer.processor))
            layer.set_processor(_MaskedKeys(layer.processor, bias))
        yield
    finally:
        for layer, processor in reversed(replaced):
            layer.set_processor(processor)


def _cross_attention_layers(pipe: Any) -> Iterator[Any]:
    for name in ("unet", "controlnet"):
        model = getattr(pipe, name, None)
        if model is None:
            continue
        for module in model.modules():  # a MultiControlNetModel holds its nets as submodules
            if getattr(module, "is_cross_attention", False) and hasattr(module, "set_processor"):
                yield module


class _MaskedKeys:
    """An attention processor that adds the padding bias of the members' rows, then calls the
    processor it wraps. Calls whose keys are not the batch's prompt tokens pass through as they are.
    Its signature takes no ``cross_attention_kwargs`` by name: the pipeline calls here pass none."""

    def __init__(self, processor: Any, bias: Any) -> None:
        self.processor = processor
        self.bias = bias

    def __call__(self, attn: Any, hidden_states: Any, encoder_hidden_states: Any = None,
                 attention_mask: Any = None, **kwargs: Any) -> Any:
        members, keys = self.bias.shape[0], self.bias.shape[-1]
        if (encoder_hidden_states is not None and encoder_hidden_states.shape[1] == keys
                and encoder_hidden_states.shape[0] % members == 0):
            bias = self.bias.to(device=hidden_states.device, dtype=hidden_states.dtype)
            bias = bias.repeat(encoder_hidden_states.shape[0] // members, 1, 1)
            attention_mask = bias if attention_mask is None else attention_mask + bias
        return self.processor(attn, hidden_states, encoder_hidden_states=encoder_hidden_states,
                              attention_mask=attention_mask, **kwargs)
