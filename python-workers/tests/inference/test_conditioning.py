"""Prompt embeddings through compel: as diffusers for short plain prompts, any length in 75-token
chunks, A1111 weighting, BREAK, clip skip, and text-encoder LoRAs taking effect."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from dops_worker.inference.conditioning import encode_prompts, max_clip_skip
from dops_worker.inference.lora import applied_loras
from dops_worker.inference.request import LoraSpec

CHUNK = 77  # 75 tokens + BOS + EOS


def _diffusers(pipe: Any, prompt: str, negative: str | None, **kwargs: Any) -> tuple[Any, ...]:
    return pipe.encode_prompt(prompt, device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=True,
                              negative_prompt=negative, **kwargs)


def test_a_short_plain_prompt_encodes_as_the_sd15_pipeline_does(sd15: Any) -> None:
    ours = encode_prompts(sd15, "a red cube on a table", "blurry")
    theirs = _diffusers(sd15, "a red cube on a table", "blurry")
    torch.testing.assert_close(ours.prompt_embeds, theirs[0])
    torch.testing.assert_close(ours.negative_prompt_embeds, theirs[1])
    assert ours.pooled_prompt_embeds is None
    assert set(ours.pipeline_arguments()) == {"prompt_embeds", "negative_prompt_embeds"}


@pytest.mark.parametrize("negative", ["blurry", ""])
def test_a_short_plain_prompt_encodes_as_the_sdxl_pipeline_does(sdxl: Any, negative: str) -> None:
    ours = encode_prompts(sdxl, "a red cube on a table", negative)
    # diffusers' "no negative prompt" is None (zeros under force_zeros_for_empty_prompt), as before compel.
    theirs = _diffusers(sdxl, "a red cube on a table", negative or None)
    for mine, reference in zip((ours.prompt_embeds, ours.negative_prompt_embeds, ours.pooled_prompt_embeds,
                                ours.negative_pooled_prompt_embeds), theirs):
        torch.testing.assert_close(mine, reference)
    if not negative:
        assert not ours.negative_prompt_embeds.any() and not ours.negative_pooled_prompt_embeds.any()


@pytest.mark.parametrize("model", ["sd15", "sdxl"])
def test_a_long_prompt_is_encoded_in_chunks_and_the_tail_counts(model: str, request: pytest.FixtureRequest,
                                                                prompt_of_tokens: Any) -> None:
    pipe = request.getfixturevalue(model)
    head, tail = prompt_of_tokens(75), prompt_of_tokens(125, offset=5)
    long = encode_prompts(pipe, f"{head} {tail}", "blurry")
    alone = encode_prompts(pipe, head, "blurry")
    assert long.prompt_embeds.shape[1] == 3 * CHUNK  # 200 tokens: 75 + 75 + 50
    assert long.negative_prompt_embeds.shape == long.prompt_embeds.shape  # padded with empty chunks
    # Each chunk goes through the encoder alone: the first is the head's own encoding ...
    torch.testing.assert_close(long.prompt_embeds[:, :CHUNK], alone.prompt_embeds)
    torch.testing.assert_close(long.negative_prompt_embeds[:, :CHUNK], alone.negative_prompt_embeds)
    # ... and the tail is there, not truncated away.
    assert not torch.allclose(long.prompt_embeds[:, CHUNK:2 * CHUNK], long.prompt_embeds[:, :CHUNK])
    if model == "sdxl":  # pooled: the first chunk's, as A1111
        torch.testing.assert_close(long.pooled_prompt_embeds, alone.pooled_prompt_embeds)
    # A long negative prompt pads the positive one instead.
    swapped = encode_prompts(pipe, head, f"{head} {tail}")
    assert swapped.prompt_embeds.shape == swapped.negative_prompt_embeds.shape == long.prompt_embeds.shape


@pytest.mark.parametrize("model", ["sd15", "sdxl"])
def test_a1111_weighting_changes_the_embeddings(model: str, request: pytest.FixtureRequest) -> None:
    pipe = request.getfixturevalue(model)
    plain = encode_prompts(pipe, "a photo of a cat", "").prompt_embeds
    for weighted in ("a photo of a (cat:1.5)", "a photo of a [cat]", "a photo of a (cat)", "a photo of a ((cat))"):
        embeds = encode_prompts(pipe, weighted, "").prompt_embeds
        assert embeds.shape == plain.shape
        assert not torch.allclose(embeds, plain), weighted
    torch.testing.assert_close(encode_prompts(pipe, "a photo of a (cat:1)", "").prompt_embeds, plain)
    up = encode_prompts(pipe, "a photo of a (cat:1.5)", "").prompt_embeds
    assert not torch.allclose(up, encode_prompts(pipe, "a photo of a (cat:1.2)", "").prompt_embeds)
    # Escaped brackets are text, not weights.
    escaped = encode_prompts(pipe, r"a photo of a \(cat\)", "").prompt_embeds
    assert not torch.allclose(escaped, encode_prompts(pipe, "a photo of a (cat)", "").prompt_embeds)


def test_break_starts_a_new_chunk(sd15: Any) -> None:
    broken = encode_prompts(sd15, "a red cube BREAK on a table", "").prompt_embeds
    assert broken.shape[1] == 2 * CHUNK
    torch.testing.assert_close(broken[:, :CHUNK], encode_prompts(sd15, "a red cube", "").prompt_embeds)
    torch.testing.assert_close(broken[:, CHUNK:], encode_prompts(sd15, "on a table", "").prompt_embeds)


def _hidden_states(encoder: Any, tokenizer: Any, prompt: str) -> Any:
    ids = tokenizer(prompt, padding="max_length", max_length=CHUNK, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        return encoder(ids, output_hidden_states=True).hidden_states


def test_clip_skip_on_sd15_is_a1111s_layer_through_the_final_norm(sd15: Any) -> None:
    assert max_clip_skip(sd15) == 3  # 2 layers: the last, the penultimate, the embeddings
    states = _hidden_states(sd15.text_encoder, sd15.tokenizer, "a red cube")
    with torch.no_grad():
        for clip_skip in (1, 2, 3):
            expected = sd15.text_encoder.final_layer_norm(states[-clip_skip])
            ours = encode_prompts(sd15, "a red cube", "blurry", clip_skip=clip_skip)
            torch.testing.assert_close(ours.prompt_embeds, expected)
            negative = sd15.text_encoder.final_layer_norm(_hidden_states(sd15.text_encoder, sd15.tokenizer,
                                                                         "blurry")[-clip_skip])
            torch.testing.assert_close(ours.negative_prompt_embeds, negative)  # the negative is skipped too
    with pytest.raises(IndexError):
        encode_prompts(sd15, "a red cube", "", clip_skip=4)


def test_clip_skip_on_sdxl_matches_diffusers_clip_skip_one_less(sdxl: Any) -> None:
    assert max_clip_skip(sdxl) == 2
    ours = encode_prompts(sdxl, "a red cube", "blurry", clip_skip=2)
    theirs = _diffusers(sdxl, "a red cube", "blurry", clip_skip=1)  # diffusers: hidden_states[-(1 + 2)]
    torch.testing.assert_close(ours.prompt_embeds, theirs[0])
    torch.testing.assert_close(ours.pooled_prompt_embeds, theirs[2])  # the pooled one: always the last layer
    # diffusers leaves the negative prompt at the penultimate layer; A1111 skips both.
    expected_negative = torch.cat([_hidden_states(encoder, tokenizer, "blurry")[-3] for tokenizer, encoder in
                                   ((sdxl.tokenizer, sdxl.text_encoder), (sdxl.tokenizer_2, sdxl.text_encoder_2))],
                                  dim=-1)
    torch.testing.assert_close(ours.negative_prompt_embeds, expected_negative)
    assert not torch.allclose(ours.prompt_embeds, encode_prompts(sdxl, "a red cube", "blurry").prompt_embeds)


def test_a_text_encoder_lora_changes_the_embeddings_while_applied(sd15: Any, sd15_text_encoder_lora: Path) -> None:
    before = encode_prompts(sd15, "a red cube", "blurry")
    with applied_loras(sd15, [LoraSpec(sd15_text_encoder_lora, 1.0)]):
        during = encode_prompts(sd15, "a red cube", "blurry")
    with applied_loras(sd15, [LoraSpec(sd15_text_encoder_lora, 0.0)]):
        at_zero = encode_prompts(sd15, "a red cube", "blurry")
    after = encode_prompts(sd15, "a red cube", "blurry")
    assert not torch.allclose(during.prompt_embeds, before.prompt_embeds)
    torch.testing.assert_close(at_zero.prompt_embeds, before.prompt_embeds)
    torch.testing.assert_close(after.prompt_embeds, before.prompt_embeds)


def test_compel_is_a_version_conditioning_was_checked_against() -> None:
    """conditioning.py uses compel through calls checked on 2.3.1 (directml.txt) and 2.5.1 (cpu.txt):
    another version must be checked again (this suite, with it installed) before its pin moves."""
    import importlib.metadata
    import re

    requirements = Path(__file__).resolve().parents[2] / "requirements"
    pins = {re.search(r"^compel==(\S+)$", (requirements / name).read_text(), re.M).group(1)  # type: ignore[union-attr]
            for name in ("cpu.txt", "directml.txt")}
    assert pins == {"2.5.1", "2.3.1"}
    assert importlib.metadata.version("compel") in pins
