from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dops_worker.models import load_pipeline

SIZE = 64


@pytest.fixture(scope="module")
def sd15(fixtures_dir: Path, tiny_configs: Path):
    return load_pipeline(fixtures_dir / "sd15-tiny.safetensors", config_dir=tiny_configs).pipeline


def test_controlnet_generates(fixtures_dir: Path, sd15) -> None:
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline
    from PIL import Image

    controlnet = ControlNetModel.from_pretrained(str(fixtures_dir / "controlnet-sd15-tiny"), local_files_only=True)
    pipe = StableDiffusionControlNetPipeline(**sd15.components, controlnet=controlnet)
    result = pipe(prompt="edges", image=Image.new("RGB", (SIZE, SIZE)), num_inference_steps=2, height=SIZE,
                  width=SIZE, generator=torch.Generator().manual_seed(0))
    assert result.images[0].size == (SIZE, SIZE)


def test_vae_single_file_loads_and_decodes(fixtures_dir: Path, tiny_configs: Path, sd15) -> None:
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_single_file(str(fixtures_dir / "vae-sd15-tiny.safetensors"),
                                         config=str(tiny_configs / "sd15"), subfolder="vae", local_files_only=True)
    for key, value in sd15.vae.state_dict().items():
        assert torch.equal(vae.state_dict()[key].to(value.dtype), value), key
    image = vae.decode(torch.zeros(1, 4, SIZE // 2, SIZE // 2)).sample
    assert image.shape == (1, 3, SIZE, SIZE)


def _module_names(pipe) -> tuple[set[str], set[str]]:
    unet = {n for n, _ in pipe.unet.named_modules()}
    text = {n if n.startswith("text_model.") else "text_model." + n for n, _ in pipe.text_encoder.named_modules()}
    return unet, text


def test_kohya_lora_targets_exist(fixtures_dir: Path, sd15) -> None:
    unet, text = _module_names(sd15)
    flat_unet = {n.replace(".", "_"): n for n in unet}
    flat_text = {n.replace(".", "_"): n for n in text}
    state = load_file(str(fixtures_dir / "lora-kohya-sd15-tiny.safetensors"))
    for key, tensor in state.items():
        module, _, suffix = key.partition(".")
        if module.startswith("lora_unet_"):
            assert module.removeprefix("lora_unet_") in flat_unet, key
        else:
            assert module.removeprefix("lora_te_") in flat_text, key
        if suffix == "alpha":
            assert tensor.ndim == 0


def test_peft_lora_targets_exist(fixtures_dir: Path, sd15) -> None:
    unet, text = _module_names(sd15)
    for key in load_file(str(fixtures_dir / "lora-peft-sd15-tiny.safetensors")):
        owner, _, rest = key.partition(".")
        module = rest.rsplit(".lora_", 1)[0]
        assert module in (unet if owner == "unet" else text), key


@pytest.mark.skipif(importlib.util.find_spec("peft") is None, reason="diffusers applies LoRA through peft")
@pytest.mark.parametrize("name", ["lora-kohya-sd15-tiny.safetensors", "lora-peft-sd15-tiny.safetensors"])
def test_lora_applies_through_diffusers(fixtures_dir: Path, tiny_configs: Path, name: str) -> None:
    pipe = load_pipeline(fixtures_dir / "sd15-tiny.safetensors", config_dir=tiny_configs).pipeline
    before = pipe(prompt="tinystyle", num_inference_steps=2, height=SIZE, width=SIZE, output_type="np",
                  generator=torch.Generator().manual_seed(0)).images
    pipe.load_lora_weights(str(fixtures_dir / name), adapter_name="tiny")
    after = pipe(prompt="tinystyle", num_inference_steps=2, height=SIZE, width=SIZE, output_type="np",
                 generator=torch.Generator().manual_seed(0)).images
    assert after.shape == (1, SIZE, SIZE, 3)
    assert not (before == after).all()


def test_spandrel_loads_the_upscaler_and_doubles(fixtures_dir: Path) -> None:
    from spandrel import ModelLoader

    descriptor = ModelLoader().load_from_file(str(fixtures_dir / "upscaler-compact-2x-tiny.safetensors"))
    assert descriptor.architecture.name in {"RealESRGAN Compact", "Compact", "SRVGGNetCompact"} or "ompact" in descriptor.architecture.name
    assert descriptor.scale == 2
    with torch.no_grad():
        out = descriptor.model.eval()(torch.rand(1, 3, 16, 16))
    assert out.shape == (1, 3, 32, 32)
