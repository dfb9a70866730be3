from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dops_worker.configs import CLIP_TOKENIZER_DIR, CONFIG_ROOT
from dops_worker.models import clip_tokenizer, identify_file, read_header
from dops_worker.protocol.errors import ErrorCode, WorkerError

IDENTIFIABLE = ("checkpoint", "lora", "controlnet", "vae", "upscaler", "diffusers")


def test_every_fixture_is_identified_as_the_manifest_says(fixtures_dir: Path, manifest: dict) -> None:
    checked = 0
    for name, expected in manifest.items():
        if expected["type"] not in IDENTIFIABLE or name.endswith(".ckpt"):
            continue
        found = identify_file(fixtures_dir / name)
        assert found.kind == expected["type"], name
        # the worker reads a ControlNet's base from its width only (the registry also reads structure)
        if expected["type"] not in ("upscaler", "controlnet"):
            assert found.base == expected["base"], name
        if expected["type"] in ("checkpoint", "lora", "diffusers"):
            assert found.variant == expected["variant"], name
        if expected["type"] == "checkpoint":
            assert found.config_name == expected["config"], name
        checked += 1
    assert checked >= 10


def test_checkpoints_keep_the_real_names_and_shape_relationships(fixtures_dir: Path) -> None:
    sd15 = read_header(fixtures_dir / "sd15-tiny.safetensors").shapes
    xl = read_header(fixtures_dir / "sdxl-tiny.safetensors").shapes
    inpaint = read_header(fixtures_dir / "sd15-inpaint-tiny.safetensors").shapes
    to_k = "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"
    # context width = the text encoder(s) width: CLIP-L for SD 1.5, CLIP-L + OpenCLIP-G concatenated for SDXL
    assert sd15[to_k][1] == sd15["cond_stage_model.transformer.text_model.final_layer_norm.weight"][0]
    assert xl[to_k][1] == (xl["conditioner.embedders.0.transformer.text_model.final_layer_norm.weight"][0]
                           + xl["conditioner.embedders.1.model.ln_final.weight"][0])
    assert sd15["model.diffusion_model.input_blocks.0.0.weight"][1] == 4
    assert inpaint["model.diffusion_model.input_blocks.0.0.weight"][1] == 9
    assert "model.diffusion_model.label_emb.0.0.weight" in xl
    assert "first_stage_model.decoder.up.0.block.0.conv1.weight" in sd15
    assert "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias" in xl


def test_diffusers_own_inference_agrees(fixtures_dir: Path) -> None:
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    def infer(name: str) -> str:
        from safetensors.torch import load_file

        return infer_diffusers_model_type(load_file(str(fixtures_dir / name)))

    assert infer("sdxl-tiny.safetensors") == "xl_base"
    assert infer("sdxl-refiner-tiny.safetensors") == "xl_refiner"
    assert infer("sd15-inpaint-tiny.safetensors") == "inpainting"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("truncated.safetensors", "truncated"),
        ("header-past-end.safetensors", "past the end"),
        ("bad-json-header.safetensors", "not JSON"),
        ("overlapping-offsets.safetensors", "overlap"),
    ],
)
def test_broken_files_fail_with_the_precise_reason(fixtures_dir: Path, name: str, reason: str) -> None:
    with pytest.raises(WorkerError) as caught:
        read_header(fixtures_dir / "broken" / name)
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT
    assert reason in caught.value.message


def test_lora_metadata_is_kept(fixtures_dir: Path) -> None:
    header = read_header(fixtures_dir / "lora-kohya-sd15-tiny.safetensors")
    assert header.metadata["ss_base_model_version"] == "sd_v1"
    assert json.loads(header.metadata["ss_tag_frequency"])["1_tiny"]["tinystyle"] == 12
    assert identify_file(fixtures_dir / "lora-kohya-sd15-tiny.safetensors").details["trigger"] == "tinystyle"


def test_shipped_tokenizer_is_clip_bpe() -> None:
    tokenizer = clip_tokenizer()
    assert len(tokenizer) == 49408
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert clip_tokenizer("!").pad_token_id == 0
    assert (CLIP_TOKENIZER_DIR / "merges.txt").read_text().count("\n") == 48894 + 1


@pytest.mark.parametrize(
    ("name", "params_m"),
    [("sd15", 859.52), ("sd15-inpaint", 859.54), ("sdxl-base", 2567.46), ("sdxl-refiner", 2259.53)],
)
def test_shipped_configs_build_the_published_unets(name: str, params_m: float) -> None:
    from diffusers import UNet2DConditionModel

    config = UNet2DConditionModel.load_config(str(CONFIG_ROOT / name / "unet"))
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config)
    assert sum(p.numel() for p in unet.parameters()) / 1e6 == pytest.approx(params_m, abs=0.01)
