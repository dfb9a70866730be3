"""Prompts → the embeddings the pipelines take (``prompt_embeds`` and the rest), through compel.

The pipelines' own ``encode_prompt`` truncates at 77 tokens and knows no weighting. Here:

- any length: the tokens are cut into chunks of 75 (+ BOS/EOS = 77), each chunk ending at a
  word end (a word never straddles two chunks, as in ComfyUI), each run through the text encoder
  on its own, the results concatenated (A1111, ComfyUI). The negative prompt is padded with empty
  chunks to the positive's length, or the other way round. ``BREAK`` starts a new chunk.
- weighting: A1111 syntax (``prompt_syntax``) gives weighted fragments; compel applies the
  weights its way — above 1 it scales the distance from the empty prompt's embedding, below 1 it
  blends towards the prompt with that fragment masked out — not A1111's multiply-then-restore-mean.
- SDXL: both encoders' penultimate hidden states, not normalised, side by side; the pooled
  embedding is text_encoder_2's projection of the first chunk, unweighted (A1111). An empty
  negative prompt is zeros where the model says ``force_zeros_for_empty_prompt`` (as diffusers).
- a batch of several prompts (a dynamic batch's members): each is encoded as it would be alone,
  then ``batch_conditioning`` pads them to the longest with zeros and records each one's own
  length, which ``padding_mask.masked_padding`` hides from the cross-attention. Padding with
  empty chunks instead (as a lone prompt's shorter half is) changes the image: keys that the
  softmax weighs.
- clip skip N (A1111's numbering: 1 = the last layer): SD 1.5 takes ``hidden_states[-N]``
  through the final layer norm (diffusers' ``clip_skip=N-1``); SDXL takes ``hidden_states[-(N+1)]``
  of both encoders (diffusers' ``clip_skip=N-1``: "SDXL always indexes from the penultimate
  layer"). The pooled embedding always comes from the last layer, as in diffusers.

The encoders are the pipeline's own modules, so LoRA layers loaded into them take effect: encode
inside ``lora.applied_loras``. compel 2.3 (DirectML lane, transformers 4) and 2.5 (transformers 5)
are both used through the same public calls: ``Compel``, ``build_conditioning_tensor_for_conjunction``,
``pad_conditioning_tensors_to_same_length``, ``conditioning_provider.get_token_ids_and_expand_weights``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dops_worker.inference.prompt_syntax import Fragment, parse_weighted_prompt

MAX_CLIP_SKIP = 12


@dataclass(frozen=True)
class Conditioning:
    """What replaces ``prompt`` / ``negative_prompt`` in a pipeline call: one row per image
    (``encode_prompts`` gives one row; ``batch_conditioning`` stacks rows)."""

    prompt_embeds: Any
    negative_prompt_embeds: Any
    pooled_prompt_embeds: Any | None = None
    negative_pooled_prompt_embeds: Any | None = None
    # Per row, how many leading tokens are its prompt's own (the rest: padding to mask), when the
    # rows' prompts differ in length; empty when every row uses the whole length.
    token_lengths: tuple[int, ...] = ()

    def pipeline_arguments(self) -> dict[str, Any]:
        arguments = {"prompt_embeds": self.prompt_embeds, "negative_prompt_embeds": self.negative_prompt_embeds}
        if self.pooled_prompt_embeds is not None:
            arguments.update(pooled_prompt_embeds=self.pooled_prompt_embeds,
                             negative_pooled_prompt_embeds=self.negative_pooled_prompt_embeds)
        return arguments


def text_encoder_layers(pipe: Any) -> list[int]:
    """The transformer layer count of each text encoder of ``pipe`` (one for SD 1.5, two for SDXL)."""
    return [int(encoder.config.num_hidden_layers) for _, encoder in _encoders(pipe)]


def max_clip_skip(pipe: Any) -> int:
    """The largest clip skip whose layer exists in every text encoder (12 at most): SD 1.5 reads
    ``hidden_states[-N]`` of L + 1 states, SDXL ``hidden_states[-(N+1)]``."""
    layers = min(text_encoder_layers(pipe))
    return min(MAX_CLIP_SKIP, layers if _is_sdxl(pipe) else layers + 1)


def encode_prompts(pipe: Any, prompt: str, negative_prompt: str, *, clip_skip: int = 1) -> Conditioning:
    """Embeddings of both prompts with ``pipe``'s tokenizers and text encoders (as they are now:
    LoRAs included). ``clip_skip`` must be within ``max_clip_skip(pipe)`` (IndexError otherwise).
    Raises what the text encoders raise (out of memory)."""
    import torch

    sdxl = _is_sdxl(pipe)
    positive, negative = parse_weighted_prompt(prompt), parse_weighted_prompt(negative_prompt)
    zero_negative = sdxl and not negative_prompt and bool(pipe.config.get("force_zeros_for_empty_prompt"))
    with torch.no_grad():
        compels, pairs = [], []
        for tokenizer, encoder in _encoders(pipe):
            compel = _compel(tokenizer, encoder, sdxl=sdxl, clip_skip=clip_skip)
            embeds = _embeddings(compel, positive)
            compels.append(compel)
            pairs.append([embeds, torch.zeros_like(embeds) if zero_negative else _embeddings(compel, negative)])
        # Pad every tensor with empty chunks to the longest (positive or negative, either encoder).
        length = max(t.shape[1] for pair in pairs for t in pair)
        for compel, pair in zip(compels, pairs):
            target = pair[0].new_zeros((1, length, pair[0].shape[-1]))
            pair[:] = compel.pad_conditioning_tensors_to_same_length([*pair, target])[:2]
            if zero_negative:
                pair[1] = torch.zeros_like(pair[0])
        prompt_embeds = torch.cat([pair[0] for pair in pairs], dim=-1)
        negative_embeds = torch.cat([pair[1] for pair in pairs], dim=-1)
        if not sdxl:
            return Conditioning(prompt_embeds, negative_embeds)
        pooled = _pooled(compels[1], pipe.text_encoder_2, positive[0])
        negative_pooled = torch.zeros_like(pooled) if zero_negative else _pooled(compels[1], pipe.text_encoder_2,
                                                                                  negative[0])
    return Conditioning(prompt_embeds, negative_embeds, pooled, negative_pooled)


def batch_conditioning(rows: Sequence[Conditioning]) -> Conditioning:
    """One row per item of ``rows`` (one row each, from ``encode_prompts``), in that order: the
    token axis padded with zeros to the longest, and ``token_lengths`` set when the lengths differ
    (hand it to ``padding_mask.masked_padding`` around the pipeline call). Raises ValueError for
    no rows."""
    import torch

    if not rows:
        raise ValueError("a batch needs at least one conditioning")
    lengths = tuple(int(row.prompt_embeds.shape[1]) for row in rows)
    longest = max(lengths)

    def stacked(name: str) -> Any:
        tensors = [getattr(row, name) for row in rows]
        if tensors[0] is None:
            return None
        if tensors[0].ndim == 3:  # (1, tokens, features); the pooled ones have no token axis
            tensors = [torch.nn.functional.pad(t, (0, 0, 0, longest - t.shape[1])) for t in tensors]
        return torch.cat(tensors)

    return Conditioning(
        stacked("prompt_embeds"), stacked("negative_prompt_embeds"), stacked("pooled_prompt_embeds"),
        stacked("negative_pooled_prompt_embeds"), token_lengths=lengths if len(set(lengths)) > 1 else (),
    )


def _is_sdxl(pipe: Any) -> bool:
    return getattr(pipe, "text_encoder_2", None) is not None


def _encoders(pipe: Any) -> list[tuple[Any, Any]]:
    encoders = [(pipe.tokenizer, pipe.text_encoder)]
    if _is_sdxl(pipe):
        encoders.append((pipe.tokenizer_2, pipe.text_encoder_2))
    return encoders


def _compel(tokenizer: Any, encoder: Any, *, sdxl: bool, clip_skip: int) -> Any:
    from compel import Compel, ReturnedEmbeddingsType
    from compel.embeddings_provider import SplitLongTextMode

    # Both read the layer they want from the encoder; clip skip hands them an encoder whose top
    # layers are gone, so SD 1.5 reads its "last" (normalised) and SDXL its "penultimate" state.
    returned = (ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED if sdxl
                else ReturnedEmbeddingsType.LAST_HIDDEN_STATES_NORMALIZED)
    skip = clip_skip - 1
    return Compel(
        tokenizer=tokenizer,
        text_encoder=_WithoutTopLayers(encoder, skip) if skip else encoder,
        truncate_long_prompts=False,
        returned_embeddings_type=returned,
        split_long_text_mode=SplitLongTextMode.WORDS,
    )


def _embeddings(compel: Any, chunks: Sequence[Sequence[Fragment]]) -> Any:
    from compel.prompt_parser import Conjunction, FlattenedPrompt

    # One prompt of a Conjunction per BREAK-separated part: compel chunks each on its own and
    # concatenates them, which is exactly what BREAK means.
    # An empty prompt is one empty fragment, as compel's own parser makes it (no fragment at all
    # makes compel tokenize an empty batch, which transformers 5 refuses).
    conjunction = Conjunction([FlattenedPrompt(list(chunk) or [("", 1.0)]) for chunk in chunks])
    conditioning, _options = compel.build_conditioning_tensor_for_conjunction(conjunction)
    return conditioning


def _pooled(compel: Any, encoder: Any, chunk: Sequence[Fragment]) -> Any:
    """text_encoder_2's projected EOS state of the first 77-token chunk, as compel cut it."""
    provider = compel.conditioning_provider
    texts = [text for text, _ in chunk]
    weights = [weight for _, weight in chunk]
    tokens, _weights, _mask = provider.get_token_ids_and_expand_weights(texts, weights, device=encoder.device)
    first = tokens[: provider.max_token_count].unsqueeze(0)
    return encoder(first, return_dict=True).text_embeds


class _WithoutTopLayers:
    """``encoder`` as compel sees it with its last ``skip`` transformer layers removed: the
    hidden states stop ``skip`` layers early and ``last_hidden_state`` is the new top one through
    the final layer norm, as CLIP's own last state is. Called the way compel calls an encoder."""

    def __init__(self, encoder: Any, skip: int) -> None:
        self.encoder = encoder
        self.skip = skip

    @property
    def device(self) -> Any:
        return self.encoder.device

    @property
    def dtype(self) -> Any:
        return self.encoder.dtype

    def __call__(self, input_ids: Any, attention_mask: Any = None, **_kwargs: Any) -> Any:
        from transformers.modeling_outputs import BaseModelOutput

        output = self.encoder(input_ids, attention_mask, output_hidden_states=True, return_dict=True)
        kept = output.hidden_states[: len(output.hidden_states) - self.skip]
        if not kept:
            raise IndexError(f"clip skip {self.skip + 1} is deeper than the text encoder")
        # transformers 5 puts the norm on CLIPTextModel itself, 4 on its inner text_model.
        norm = getattr(self.encoder, "text_model", self.encoder).final_layer_norm
        last = norm(kept[-1])
        return BaseModelOutput(last_hidden_state=last, hidden_states=kept)
