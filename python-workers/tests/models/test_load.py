from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dops_worker.models import ModelCache, load_pipeline
from dops_worker.protocol.errors import ErrorCode, WorkerError

SIZE = 64
COMMON = {"num_inference_steps": 2, "output_type": "pil", "height": SIZE, "width": SIZE}


def generator() -> torch.Generator:
    return torch.Generator("cpu").manual_seed(0)


def rgb(seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))


def assert_one_image(result) -> None:
    (image,) = result.images
    assert image.size == (SIZE, SIZE)
    assert np.isfinite(np.asarray(image, dtype=np.float32)).all()


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize("name", ["sd15-tiny.safetensors", "sdxl-tiny.safetensors", "sd15-tiny-diffusers"])
def test_txt2img_offline(fixtures_dir: Path, tiny_configs: Path, name: str) -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    loaded = load_pipeline(fixtures_dir / name, config_dir=tiny_configs)
    assert loaded.source == "disk"
    assert_one_image(loaded.pipeline(prompt="a tiny cat", generator=generator(), **COMMON))


@pytest.mark.usefixtures("no_network")
def test_inpaint_offline(fixtures_dir: Path, tiny_configs: Path) -> None:
    loaded = load_pipeline(fixtures_dir / "sd15-inpaint-tiny.safetensors", config_dir=tiny_configs)
    assert type(loaded.pipeline).__name__ == "StableDiffusionInpaintPipeline"
    assert loaded.pipeline.unet.config.in_channels == 9
    mask = Image.new("L", (SIZE, SIZE), 0)
    mask.paste(255, (16, 16, 48, 48))
    assert_one_image(loaded.pipeline(prompt="a hat", image=rgb(), mask_image=mask, generator=generator(), **COMMON))


@pytest.mark.usefixtures("no_network")
def test_refiner_img2img_offline(fixtures_dir: Path, tiny_configs: Path) -> None:
    loaded = load_pipeline(fixtures_dir / "sdxl-refiner-tiny.safetensors", config_dir=tiny_configs)
    assert type(loaded.pipeline).__name__ == "StableDiffusionXLImg2ImgPipeline"
    result = loaded.pipeline(prompt="sharper", image=rgb(), strength=0.5, generator=generator(),
                             **{**COMMON, "num_inference_steps": 4})
    assert_one_image(result)


def test_single_file_weights_equal_the_diffusers_folder(fixtures_dir: Path, tiny_configs: Path) -> None:
    """The LDM layout round-trips: the single file and the folder hold the same (fp16) weights."""
    single = load_pipeline(fixtures_dir / "sd15-tiny.safetensors", config_dir=tiny_configs).pipeline
    folder = load_pipeline(fixtures_dir / "sd15-tiny-diffusers").pipeline
    for component in ("unet", "vae", "text_encoder"):
        a, b = getattr(single, component).state_dict(), getattr(folder, component).state_dict()
        for key, value in b.items():
            if key.endswith("position_ids"):
                continue
            assert torch.equal(a[key], value), f"{component}.{key}"


def test_pickle_checkpoint_is_refused_unless_the_node_allows_it(fixtures_dir: Path, tiny_configs: Path,
                                                                  node) -> None:
    ckpt = fixtures_dir / "broken" / "sd15-tiny.ckpt"
    with pytest.raises(WorkerError) as caught:
        load_pipeline(ckpt, config_dir=tiny_configs)
    assert caught.value.code is ErrorCode.FAILED_PRECONDITION
    assert caught.value.details["field"] == "path"
    assert caught.value.details["setting"] == "DOPS_ALLOW_UNSAFE_PICKLE"
    node(allow_unsafe_pickle=True)
    loaded = load_pipeline(ckpt, config_dir=tiny_configs)  # a plain state dict: weights-only loads it
    assert (loaded.identification.base, loaded.identification.variant) == ("sd15", "normal")


def test_damaged_and_unknown_inputs_fail_before_any_work(fixtures_dir: Path, tiny_configs: Path) -> None:
    with pytest.raises(WorkerError) as caught:
        load_pipeline(fixtures_dir / "broken" / "truncated.safetensors", config_dir=tiny_configs)
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT
    with pytest.raises(WorkerError) as caught:
        load_pipeline(fixtures_dir / "lora-kohya-sd15-tiny.safetensors", config_dir=tiny_configs)
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT and "lora" in caught.value.message
    with pytest.raises(WorkerError) as caught:
        load_pipeline(fixtures_dir / "missing.safetensors")
    assert caught.value.code is ErrorCode.NOT_FOUND


def test_ram_tier_does_not_reopen_the_file(fixtures_dir: Path, tiny_configs: Path, tmp_path: Path) -> None:
    source = tmp_path / "model.safetensors"
    source.write_bytes((fixtures_dir / "sd15-tiny.safetensors").read_bytes())
    cache = ModelCache("cpu")
    first = cache.load(source, config_dir=tiny_configs)
    assert first.source == "disk" and first.timings["read_s"] > 0 and first.timings["build_s"] > 0
    assert set(first.timings) == {"read_s", "build_s", "to_device_s"}

    moved = source.rename(tmp_path / "elsewhere.safetensors")  # a reopen would now fail
    second = cache.load(source, config_dir=tiny_configs)
    assert second.pipeline is first.pipeline
    assert second.source == "device" and second.timings["read_s"] == second.timings["build_s"] == 0.0

    assert cache.unload(source, tier="device", config_dir=tiny_configs)
    third = cache.load(source, config_dir=tiny_configs)
    assert third.source == "ram" and third.timings["read_s"] == 0.0
    assert_one_image(third.pipeline(prompt="x", generator=generator(), **COMMON))

    assert cache.unload(source, config_dir=tiny_configs)
    assert cache.resident() == {}
    with pytest.raises(WorkerError) as caught:
        cache.load(source, config_dir=tiny_configs)
    assert caught.value.code is ErrorCode.NOT_FOUND
    assert moved.exists()


def test_ram_tier_rereads_a_file_changed_on_disk(fixtures_dir: Path, tiny_configs: Path, tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes((fixtures_dir / "sd15-tiny.safetensors").read_bytes())
    cache = ModelCache("cpu")
    first = cache.load(path, config_dir=tiny_configs)
    path.write_bytes((fixtures_dir / "sd15-inpaint-tiny.safetensors").read_bytes())
    os.utime(path, ns=(1, 1))
    second = cache.load(path, config_dir=tiny_configs)
    assert second.source == "disk" and second.pipeline is not first.pipeline
    assert second.identification.variant == "inpaint"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_ram_tier_pins_and_moves_to_cuda(fixtures_dir: Path, tiny_configs: Path) -> None:
    cache = ModelCache("cuda")
    first = cache.load(fixtures_dir / "sdxl-tiny.safetensors", config_dir=tiny_configs)
    assert first.pipeline.unet.device.type == "cuda"
    cache.unload(fixtures_dir / "sdxl-tiny.safetensors", tier="device", config_dir=tiny_configs)
    assert first.pipeline.unet.device.type == "cpu"
    assert next(first.pipeline.unet.parameters()).is_pinned()
    again = cache.load(fixtures_dir / "sdxl-tiny.safetensors", config_dir=tiny_configs)
    assert again.source == "ram" and again.pipeline.unet.device.type == "cuda"


def test_sdxl_text_encoders_hold_the_checkpoint_weights(fixtures_dir: Path, tiny_configs: Path) -> None:
    """Each SDXL text encoder gets its own embedder: CLIP-L from embedders.0, every OpenCLIP-G layer from embedders.1."""
    from dops_worker.models.loader import read_state_dict

    pipe = load_pipeline(fixtures_dir / "sdxl-tiny.safetensors", config_dir=tiny_configs).pipeline
    state = read_state_dict(fixtures_dir / "sdxl-tiny.safetensors")
    for component in ("unet", "vae", "text_encoder", "text_encoder_2"):
        module = getattr(pipe, component)
        assert not [k for k, v in [*module.named_parameters(), *module.named_buffers()] if v.is_meta], component
    g = pipe.text_encoder_2
    width = g.config.hidden_size
    assert width != pipe.text_encoder.config.hidden_size  # as 1280 vs 768 in the real model
    for i in range(g.config.num_hidden_layers):
        in_proj = state[f"conditioner.embedders.1.model.transformer.resblocks.{i}.attn.in_proj_weight"].float()
        attn = g.text_model.encoder.layers[i].self_attn
        for n, proj in enumerate((attn.q_proj, attn.k_proj, attn.v_proj)):
            assert torch.equal(proj.weight, in_proj[n * width:(n + 1) * width]), (i, n)
    assert torch.equal(g.text_projection.weight, state["conditioner.embedders.1.model.text_projection"].float().T)
    l_embed = state["conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight"].float()
    assert torch.equal(pipe.text_encoder.get_input_embeddings().weight, l_embed)


def test_tensors_missing_from_a_checkpoint_fail_the_load(fixtures_dir: Path, tiny_configs: Path) -> None:
    """A conversion that leaves tensors on the meta device is refused at load time, not at inference."""
    from dops_worker.models.loader import build_from_state_dict, read_state_dict

    state = {k: v for k, v in read_state_dict(fixtures_dir / "sdxl-tiny.safetensors").items()
             if ".model.transformer.resblocks.5." not in k}
    with pytest.raises(WorkerError) as caught:
        build_from_state_dict(state, tiny_configs / "sdxl-base")
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT
    assert caught.value.details["component"] == "text_encoder_2"
    assert any("layers.5." in key for key in caught.value.details["missing"])
