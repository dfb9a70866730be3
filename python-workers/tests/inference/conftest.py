"""Tiny random SD 1.5 and SDXL pipelines (diffusers-test sized), saved to disk and loaded back.

CPU only; 2 denoising steps at 64×48 keep each generation in the tens of milliseconds.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
# Tiny models gain nothing from threads, and on a shared 2-core box OpenMP spinning makes a
# 0.1 s generation take seconds.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[3]
CLIP_TOKENIZER = REPO / "python-workers/src/dops_worker/configs/clip_tokenizer"
GENERATED = REPO / "tools/fixtures/generated"


def _tokenizer(directory: Path) -> Any:
    from transformers import CLIPTokenizer

    if (CLIP_TOKENIZER / "vocab.json").is_file():
        return CLIPTokenizer.from_pretrained(str(CLIP_TOKENIZER))
    return CLIPTokenizer(*_tiny_bpe(directory), model_max_length=77)


def _tiny_bpe(directory: Path) -> tuple[str, str]:
    """A byte-level vocabulary with no merges: every character is a token."""
    import json

    from transformers.models.clip.tokenization_clip import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    vocab = {s: i for i, s in enumerate(symbols + [s + "</w>" for s in symbols])}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    return str(directory / "vocab.json"), str(directory / "merges.txt")


def _text_config(tokenizer: Any, hidden: int, projection: int | None = None) -> Any:
    from transformers import CLIPTextConfig

    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    bos = tokenizer.convert_tokens_to_ids("<|startoftext|>")
    kwargs = dict(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=37, num_attention_heads=4,
        num_hidden_layers=2, layer_norm_eps=1e-5, bos_token_id=bos, eos_token_id=eos, pad_token_id=eos,
        max_position_embeddings=77, hidden_act="gelu",
    )
    if projection is not None:
        kwargs["projection_dim"] = projection
    return CLIPTextConfig(**kwargs)


def _scheduler() -> Any:
    return diffusers.EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", timestep_spacing="leading",
        steps_offset=1,
    )


def _vae() -> Any:
    return diffusers.AutoencoderKL(
        block_out_channels=[16, 32], in_channels=3, out_channels=3, norm_num_groups=8,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"], latent_channels=4, sample_size=32,
    )


def build_sd15(directory: Path, *, in_channels: int = 4) -> Path:
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        block_out_channels=(16, 32), layers_per_block=1, sample_size=32, in_channels=in_channels, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, norm_num_groups=8, attention_head_dim=4,
    )
    tokenizer = _tokenizer(directory / "_bpe")
    text_encoder = CLIPTextModel(_text_config(tokenizer, 32))
    pipe = diffusers.StableDiffusionPipeline(
        unet=unet, vae=_vae(), text_encoder=text_encoder, tokenizer=tokenizer, scheduler=_scheduler(),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(str(directory), safe_serialization=True)
    return directory


def build_sdxl(directory: Path) -> Path:
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        block_out_channels=(16, 32), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=16 + 6 * 8, cross_attention_dim=32, norm_num_groups=8,
    )
    tokenizer = _tokenizer(directory / "_bpe")
    pipe = diffusers.StableDiffusionXLPipeline(
        unet=unet, vae=_vae(), scheduler=_scheduler(), tokenizer=tokenizer, tokenizer_2=tokenizer,
        text_encoder=CLIPTextModel(_text_config(tokenizer, 16)),
        text_encoder_2=CLIPTextModelWithProjection(_text_config(tokenizer, 16, projection=16)),
    )
    pipe.save_pretrained(str(directory), safe_serialization=True)
    return directory


def _load(directory: Path, pipeline_class: Any) -> Any:
    pipe = pipeline_class.from_pretrained(str(directory), local_files_only=True, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to("cpu")


@pytest.fixture(scope="session")
def sd15_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sd15(tmp_path_factory.mktemp("sd15"))


@pytest.fixture(scope="session")
def sd15(sd15_dir: Path) -> Any:
    return _load(sd15_dir, diffusers.StableDiffusionPipeline)


@pytest.fixture(scope="session")
def sd15_inpaint(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return _load(build_sd15(tmp_path_factory.mktemp("sd15i"), in_channels=9), diffusers.StableDiffusionPipeline)


@pytest.fixture(scope="session")
def sdxl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sdxl(tmp_path_factory.mktemp("sdxl"))


@pytest.fixture(scope="session")
def sdxl(sdxl_dir: Path) -> Any:
    return _load(sdxl_dir, diffusers.StableDiffusionXLPipeline)


@pytest.fixture
def load_pipeline() -> Any:
    """``load_pipeline(directory, pipeline_class)``: a fresh copy, for tests that change modules."""
    return _load


@pytest.fixture(scope="session")
def sd15_lora(sd15: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A peft-style LoRA for the tiny SD 1.5 UNet with random (non-zero) B matrices."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    directory = tmp_path_factory.mktemp("lora")
    unet = diffusers.UNet2DConditionModel.from_config(sd15.unet.config)
    unet.load_state_dict(sd15.unet.state_dict())
    torch.manual_seed(1)
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False,
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    diffusers.StableDiffusionPipeline.save_lora_weights(
        str(directory), unet_lora_layers=get_peft_model_state_dict(unet), weight_name="tiny-lora.safetensors",
        safe_serialization=True,
    )
    return directory / "tiny-lora.safetensors"


@pytest.fixture(scope="session")
def sd15_text_encoder_lora(sd15: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA of the tiny SD 1.5 text encoder only (random non-zero B matrices): whatever it
    changes in an image, it changes through the prompt embeddings."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from transformers import CLIPTextModel

    directory = tmp_path_factory.mktemp("te-lora")
    text_encoder = CLIPTextModel(sd15.text_encoder.config)
    text_encoder.load_state_dict(sd15.text_encoder.state_dict())
    torch.manual_seed(3)
    text_encoder.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False,
                                        target_modules=["q_proj", "k_proj", "v_proj", "out_proj"]))
    diffusers.StableDiffusionPipeline.save_lora_weights(
        str(directory), text_encoder_lora_layers=get_peft_model_state_dict(text_encoder),
        weight_name="tiny-te-lora.safetensors", safe_serialization=True,
    )
    return directory / "tiny-te-lora.safetensors"


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    inputs, outputs = tmp_path / "inputs", tmp_path / "outputs"
    inputs.mkdir()
    outputs.mkdir()
    return inputs, outputs


def _write_image(path: Path, size: tuple[int, int], mode: str = "RGB", value: int | None = None) -> Path:
    import numpy as np
    from PIL import Image

    width, height = size
    channels = 3 if mode == "RGB" else 1
    if value is None:
        pixels = np.random.default_rng(0).integers(0, 256, (height, width, channels), dtype=np.uint8)
    else:
        pixels = np.full((height, width, channels), value, dtype=np.uint8)
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(path)
    return path


def _make_request(pipe: Any, roots: tuple[Path, Path], **fields: Any) -> Any:
    """A parsed request with test-sized defaults (64×48, 2 steps, seed 1)."""
    from dops_worker.inference.pipelines import limits_for_pipeline
    from dops_worker.inference.request import parse_generate_request
    from dops_worker.protocol.files import Roots
    from dops_worker.runtime.settings import node_settings

    params = {"model": "tiny", "prompt": "a red cube", "width": 64, "height": 48, "steps": 2, "seed": 1,
              "scheduler": "Euler", "outputDir": "out", **fields}
    params = {key: value for key, value in params.items() if value is not None}
    return parse_generate_request(params, limits=limits_for_pipeline(pipe), input_roots=Roots("the input root", (roots[0],)),
                                  artifact_roots=Roots("the artifact root", (roots[1],)),
                                  model_roots=node_settings().model_roots)


# Words the CLIP BPE keeps whole (one token each), so a prompt of n of them is n tokens.
_ONE_TOKEN_WORDS = ("red", "blue", "green", "cat", "dog", "tree", "house", "car", "sky", "river", "stone", "cloud")


def _prompt_of_tokens(count: int, offset: int = 0) -> str:
    """A prompt of exactly ``count`` CLIP tokens (without BOS/EOS), each a word."""
    return " ".join(_ONE_TOKEN_WORDS[(offset + i) % len(_ONE_TOKEN_WORDS)] for i in range(count))


@pytest.fixture
def prompt_of_tokens() -> Any:
    return _prompt_of_tokens


@pytest.fixture
def make_request() -> Any:
    return _make_request


@pytest.fixture
def write_image() -> Any:
    return _write_image
