"""Dynamic batches (GenerateParams.members): one pipeline call, each member's image its solo run's.

"Its solo run's" is measured on the decoded PNG pixels. On this CPU it holds to within
MAX_PIXEL_DIFFERENCE, not bit for bit: MKL's GEMM and oneDNN's convolutions choose kernels by the
batch size, so the same rows are summed in another order (an nn.Linear on 8 rows vs the same 2
rows differs by up to ~1e-6; the latents of the 2-step tiny runs by ~1.6e-5). Neither
torch.use_deterministic_algorithms, nor oneDNN off, nor MKL_CBWR (COMPATIBLE, AVX2,STRICT), nor
decoding each member on its own makes them equal. Where a run has one member per call (the OOM
plan's smaller batch) the images are bit-identical, and that is tested too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from dops_worker.inference.artifacts import read_metadata
from dops_worker.inference.generate import GenerateHooks, generate
from dops_worker.protocol.errors import ErrorCode, WorkerError

# One level of 255, in a few values: batch-size-dependent summation order on the CPU (see the
# module docstring). Measured: most members bit-identical, the others off by 1 in at most 0.02%
# of their values.
MAX_PIXEL_DIFFERENCE = 1
MAX_DIFFERING_FRACTION = 0.001


def _pixels(result: dict[str, Any], index: int = 0) -> np.ndarray:
    with Image.open(result["images"][index]["path"]) as image:
        return np.asarray(image.convert("RGB")).astype(np.int16)


def _run(pipe: Any, request: Any, **hooks: Any) -> dict[str, Any]:
    return generate(pipe, request, device="cpu", hooks=GenerateHooks(**hooks))


def _difference(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a - b).max())


def _assert_solo_equal(batch_image: np.ndarray, solo_image: np.ndarray) -> None:
    """Equal up to the CPU's batch-dependent rounding: within MAX_PIXEL_DIFFERENCE, in few values."""
    difference = np.abs(batch_image - solo_image)
    assert difference.max() <= MAX_PIXEL_DIFFERENCE, difference.max()
    assert (difference > 0).mean() <= MAX_DIFFERING_FRACTION, (difference > 0).mean()


def _members(prompt_of_tokens: Any, lengths: str) -> list[dict[str, Any]]:
    """Four members; members 0 and 2 share a seed, so only their prompts tell their images apart.
    "mixed": prompts of 1, 2, 1 and 3 chunks of 77 tokens (the batch pads to 3, masked)."""
    if lengths == "mixed":
        prompts = ["a red cube", prompt_of_tokens(100), "green tree house", prompt_of_tokens(160, offset=3)]
    else:
        prompts = ["a red cube", "a blue dog", "green tree house", "(cat:1.3) on a stone"]
    seeds: list[Any] = [3, str(2**40 + 5), 3, 8]  # a uint64 may come as a decimal string
    return [{"prompt": prompt, "negativePrompt": "blurry" if i % 2 else "", "seed": seed}
            for i, (prompt, seed) in enumerate(zip(prompts, seeds))]


def _batch(pipe: Any, roots: tuple[Path, Path], make_request: Any, members: list[dict[str, Any]],
           **fields: Any) -> Any:
    return make_request(pipe, roots, prompt=None, seed=None, members=members, **fields)


def _solo(pipe: Any, roots: tuple[Path, Path], make_request: Any, member: dict[str, Any], **fields: Any) -> Any:
    return make_request(pipe, roots, **{"negativePrompt": None, **member}, **fields)


@pytest.mark.parametrize("lengths", ["one-chunk", "mixed"])
@pytest.mark.parametrize("model", ["sd15", "sdxl"])
def test_each_members_image_is_its_solo_run(model: str, lengths: str, request: pytest.FixtureRequest,
                                           roots: tuple[Path, Path], make_request: Any,
                                           prompt_of_tokens: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = request.getfixturevalue(model)
    members = _members(prompt_of_tokens, lengths)
    calls: list[int] = []
    original = pipe.unet.forward

    def counting(sample: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(sample.shape[0])
        return original(sample, *args, **kwargs)

    monkeypatch.setattr(pipe.unet, "forward", counting)
    batch = _run(pipe, _batch(pipe, roots, make_request, members))
    monkeypatch.undo()
    assert calls == [8, 8]  # one call: 2 steps of 4 members × (negative, positive)
    solos = [_run(pipe, _solo(pipe, roots, make_request, member)) for member in members]
    seeds = [3, 2**40 + 5, 3, 8]
    assert batch["seeds"] == seeds and batch["seed"] == 3
    assert [(image["index"], image["member"], image["seed"]) for image in batch["images"]] == [
        (i, i, seed) for i, seed in enumerate(seeds)]
    for i, solo in enumerate(solos):
        _assert_solo_equal(_pixels(batch, i), _pixels(solo))
    # The bound tells images apart: members 0 and 2 differ in their prompts only, 0 and 1 in all.
    assert _difference(_pixels(batch, 0), _pixels(solos[2])) > 4 * MAX_PIXEL_DIFFERENCE
    assert _difference(_pixels(batch, 0), _pixels(solos[1])) > 4 * MAX_PIXEL_DIFFERENCE


def test_the_padding_of_a_shorter_member_is_masked(sd15: Any, roots: tuple[Path, Path], make_request: Any,
                                                   prompt_of_tokens: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Why padding_mask.py exists: unmasked, the zero padding up to the longest member is weighed
    by the cross-attention and the short member's image is no longer its solo run's."""
    from contextlib import nullcontext

    from dops_worker.inference import generate as generate_module

    members = _members(prompt_of_tokens, "mixed")[:2]  # 77 and 154 tokens
    solo = _pixels(_run(sd15, _solo(sd15, roots, make_request, members[0])))
    masked = _pixels(_run(sd15, _batch(sd15, roots, make_request, members)), 0)
    monkeypatch.setattr(generate_module, "masked_padding", lambda pipe, lengths: nullcontext())
    unmasked = _pixels(_run(sd15, _batch(sd15, roots, make_request, members)), 0)
    _assert_solo_equal(masked, solo)
    assert _difference(unmasked, solo) > MAX_PIXEL_DIFFERENCE


@pytest.mark.parametrize("model", ["sd15", "sdxl"])
def test_img2img_members_each_with_its_own_init_image(model: str, request: pytest.FixtureRequest,
                                                     roots: tuple[Path, Path], make_request: Any,
                                                     write_image: Any) -> None:
    pipe = request.getfixturevalue(model)
    write_image(roots[0] / "grey.png", (80, 56), value=128)
    write_image(roots[0] / "noise.png", (80, 56))
    members = [{"prompt": "a red cube", "seed": 5, "initImage": "noise.png"},
               {"prompt": "a blue dog", "seed": 6, "initImage": "grey.png"}]
    fields = {"mode": "img2img", "strength": 0.5}
    batch = _run(pipe, _batch(pipe, roots, make_request, members, **fields))
    solos = [_run(pipe, _solo(pipe, roots, make_request, member, **fields)) for member in members]
    for i, solo in enumerate(solos):
        _assert_solo_equal(_pixels(batch, i), _pixels(solo))
    swapped = _run(pipe, _solo(pipe, roots, make_request, {**members[0], "initImage": "grey.png"}, **fields))
    assert _difference(_pixels(batch, 0), _pixels(swapped)) > 4 * MAX_PIXEL_DIFFERENCE


def test_inpaint_members_each_with_its_own_image_and_mask(sd15_inpaint: Any, roots: tuple[Path, Path],
                                                         make_request: Any, write_image: Any) -> None:
    pipe = sd15_inpaint
    write_image(roots[0] / "noise.png", (64, 48))
    write_image(roots[0] / "grey.png", (64, 48), value=90)
    left = np.zeros((48, 64), dtype=np.uint8)
    left[:, :32] = 255
    Image.fromarray(left, "L").save(roots[0] / "left.png")
    Image.fromarray(255 - left, "L").save(roots[0] / "right.png")
    members = [{"prompt": "a red cube", "seed": 5, "initImage": "noise.png", "mask": "left.png"},
               {"prompt": "a blue dog", "seed": 6, "initImage": "grey.png", "mask": "right.png"}]
    batch = _run(pipe, _batch(pipe, roots, make_request, members, mode="inpaint"))
    for i, member in enumerate(members):
        solo = _run(pipe, _solo(pipe, roots, make_request, member, mode="inpaint"))
        _assert_solo_equal(_pixels(batch, i), _pixels(solo))


@pytest.mark.parametrize("model", ["sd15", "sdxl"])
def test_members_share_the_controlnet_image_and_its_attention_is_masked_too(
        model: str, request: pytest.FixtureRequest, roots: tuple[Path, Path], make_request: Any,
        write_image: Any, prompt_of_tokens: Any, tmp_path: Path) -> None:
    import diffusers

    pipe = request.getfixturevalue(model)
    torch.manual_seed(2)
    controlnet = diffusers.ControlNetModel.from_unet(pipe.unet, conditioning_embedding_out_channels=(8, 16))
    with torch.no_grad():  # from_unet's zero convolutions would make the ControlNet (and its attention) moot
        for conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            conv.weight.normal_(std=0.3)
    controlnet.save_pretrained(str(tmp_path / "cn"))
    write_image(roots[0] / "hint.png", (64, 48))
    fields = {"controlnets": [{"path": str(tmp_path / "cn"), "image": "hint.png", "conditioningScale": 1.5}]}
    members = _members(prompt_of_tokens, "mixed")[:2]  # 77 and 154 tokens: the ControlNet sees padding too
    batch = _run(pipe, _batch(pipe, roots, make_request, members, **fields))
    for i, member in enumerate(members):
        _assert_solo_equal(_pixels(batch, i), _pixels(_run(pipe, _solo(pipe, roots, make_request, member, **fields))))


def test_each_members_png_carries_its_own_solo_metadata(sd15: Any, roots: tuple[Path, Path],
                                                       make_request: Any) -> None:
    members = [{"prompt": "a café, blue", "negativePrompt": "blurry", "seed": 11}, {"prompt": "a red cube"}]
    request = _batch(sd15, roots, make_request, members, modelHashes={"sha256": "ab" * 32})
    random_seed = request.members[1].seed
    assert request.members[1].seed_was_random and 0 <= random_seed < 2**32
    batch = _run(sd15, request)
    for i, member in enumerate(members):
        text = read_metadata(Path(batch["images"][i]["path"]))
        solo = _run(sd15, _solo(sd15, roots, make_request, {**member, "seed": member.get("seed", random_seed)},
                                modelHashes={"sha256": "ab" * 32}))
        solo_text = read_metadata(Path(solo["images"][0]["path"]))
        dops, solo_dops = json.loads(text["dops"]), json.loads(solo_text["dops"])
        assert dops["prompt"] == member["prompt"] and dops["seed"] == batch["seeds"][i]
        assert text["parameters"].startswith(member["prompt"])
        assert f"Seed: {batch['seeds'][i]}," in text["parameters"]
        # As for the solo run; only the random seed's flag tells them apart.
        assert text["parameters"] == solo_text["parameters"]
        assert {**dops, "seedWasRandom": None} == {**solo_dops, "seedWasRandom": None}
        assert dops["seedWasRandom"] is ("seed" not in member) and "members" not in dops
    assert "Negative prompt: blurry" in read_metadata(Path(batch["images"][0]["path"]))["parameters"]
    assert "Negative prompt" not in read_metadata(Path(batch["images"][1]["path"]))["parameters"]


def test_out_of_memory_splits_the_members_and_each_keeps_its_image(sd15: Any, roots: tuple[Path, Path],
                                                                  make_request: Any, prompt_of_tokens: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    members = _members(prompt_of_tokens, "mixed")
    original = sd15.unet.forward

    def small_batches_only(sample: Any, *args: Any, **kwargs: Any) -> Any:
        if sample.shape[0] > 2:  # more than one member's (negative, positive)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(sample, *args, **kwargs)

    monkeypatch.setattr(sd15.unet, "forward", small_batches_only)
    steps: list[tuple[int, int]] = []
    batch = _run(sd15, _batch(sd15, roots, make_request, members),
                 progress=lambda step, total, preview=None: steps.append((step, total)))
    monkeypatch.undo()
    assert batch["oomMitigations"] == ["smaller_batch"]
    assert steps == [(step, 8) for step in range(1, 9)]  # 4 calls of 2 steps
    for i, member in enumerate(members):
        solo = _run(sd15, _solo(sd15, roots, make_request, member))
        # One member per call is its solo run exactly: same shapes, same kernels.
        assert np.array_equal(_pixels(batch, i), _pixels(solo)), i
        assert read_metadata(Path(batch["images"][i]["path"])) == read_metadata(Path(solo["images"][0]["path"]))


def test_cancel_stops_the_whole_call_and_restores_the_attention(sd15: Any, roots: tuple[Path, Path],
                                                               make_request: Any, prompt_of_tokens: Any) -> None:
    processors = {name: type(p) for name, p in sd15.unet.attn_processors.items()}
    seen: list[tuple[int, int]] = []
    with pytest.raises(WorkerError) as caught:
        _run(sd15, _batch(sd15, roots, make_request, _members(prompt_of_tokens, "mixed"), steps=4),
             progress=lambda step, total, preview=None: seen.append((step, total)),
             raise_if_cancelled=GenerateHooks.cancel_check(lambda: bool(seen)))
    assert caught.value.code is ErrorCode.CANCELLED
    assert seen == [(1, 4)]  # progress counts the steps of the one call
    assert {name: type(p) for name, p in sd15.unet.attn_processors.items()} == processors


# -- parsing ---------------------------------------------------------------------------------------


@pytest.fixture
def images(roots: tuple[Path, Path], write_image: Any) -> None:
    write_image(roots[0] / "init.png", (64, 48))
    write_image(roots[0] / "other.png", (64, 48))
    write_image(roots[0] / "small.png", (32, 32))
    write_image(roots[0] / "mask.png", (64, 48), "L", 255)


_TWO = [{"prompt": "a"}, {"prompt": "b"}]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"prompt": "a red cube", "members": _TWO}, "prompt"),
        ({"negativePrompt": "blurry", "members": _TWO}, "negativePrompt"),
        ({"seed": 1, "members": _TWO}, "seed"),
        ({"seed": "0", "members": _TWO}, "seed"),  # uint64 with presence: 0 is set
        ({"batchCount": 2, "members": _TWO}, "batchCount"),
        ({"mode": "img2img", "initImage": "init.png", "members": [{"initImage": "init.png"}]}, "initImage"),
        ({"mode": "inpaint", "mask": "mask.png", "members": [{"initImage": "init.png", "mask": "mask.png"}]}, "mask"),
        ({"members": [{"prompt": str(i)} for i in range(9)]}, "members"),  # the tiny models' max batch is 8
        ({"members": {"prompt": "a"}}, "members"),
        ({"members": [{"prompt": "a"}, "b"]}, "members[1]"),
        ({"members": [{"seed": 1}, {"seed": "12a"}]}, "members[1].seed"),
        ({"members": [{"seed": 1}, {"seed": -1}]}, "members[1].seed"),
        ({"members": [{"seed": 1}, {"seed": 2**64}]}, "members[1].seed"),
        ({"members": [{"prompt": "a"}, {"prompt": 7}]}, "members[1].prompt"),
        ({"members": [{"negativePrompt": "x" * 20_001}]}, "members[0].negativePrompt"),
        ({"members": [{"prompt": "a", "colour": "red"}]}, "members[0].colour"),
        ({"members": [{"initImage": "init.png"}]}, "members[0].initImage"),
        ({"mode": "img2img", "members": [{"initImage": "init.png"}, {"prompt": "b"}]}, "members[1].initImage"),
        ({"mode": "img2img", "members": [{"initImage": "init.png"}, {"initImage": "small.png"}]},
         "members[1].initImage"),
        ({"mode": "img2img", "members": [{"initImage": "/etc/passwd"}]}, "members[0].initImage"),
        ({"mode": "img2img", "members": [{"initImage": "init.png", "mask": "mask.png"}]}, "members[0].mask"),
        ({"mode": "inpaint", "members": [{"initImage": "init.png"}]}, "members[0].mask"),
        ({"mode": "inpaint", "members": [{"initImage": "init.png", "mask": "small.png"}]}, "members[0].mask"),
    ],
)
def test_bad_members_name_the_field(sd15: Any, roots: tuple[Path, Path], images: None, make_request: Any,
                                    fields: dict[str, Any], field: str) -> None:
    with pytest.raises(WorkerError) as caught:
        make_request(sd15, roots, **{"prompt": None, "seed": None, **fields})
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT, caught.value
    assert caught.value.details["field"] == field


def test_members_parse_to_their_solo_requests(sd15: Any, roots: tuple[Path, Path], images: None,
                                              make_request: Any) -> None:
    members = [{"prompt": "a", "negativePrompt": "n", "seed": "18446744073709551615", "initImage": "init.png",
                "mask": "mask.png"},
               {"prompt": "", "negativePrompt": "", "initImage": "other.png", "mask": "mask.png"}]  # "" = absent
    request = make_request(sd15, roots, prompt=None, seed=None, mode="inpaint", batchCount=1, members=members)
    assert request.batch_count == 2 and request.prompt == "" and request.init_image is None
    assert request.seeds() == [2**64 - 1, request.members[1].seed] and request.seed == 2**64 - 1
    assert request.members[1].seed_was_random and not request.members[0].seed_was_random
    alone = make_request(sd15, roots, mode="inpaint", prompt="a", negativePrompt="n", seed=2**64 - 1,
                         initImage="init.png", mask="mask.png")
    assert request.alone(0) == alone
    assert request.alone(1).init_image.path == roots[0] / "other.png" and request.alone(1).prompt == ""
    # A protobuf library's empty list is no members at all.
    assert make_request(sd15, roots, members=[]).members == ()
    assert len(make_request(sd15, roots, prompt=None, seed=None, members=[{}] * 8).members) == 8

