"""An SDXL-size UNet and VAE without a checkpoint, and the inputs of one UNet call and one decode:
what the GPU probes (compile_probe.py, knob_probe.py) time and flops.py counts.

``add_arguments``, ``setup``, ``compile_as_lane``, ``ms_per_call``, ``in_turn``, ``ms_summary``,
``speed_over`` and ``write_report`` are the options, the start, the compile, the timing, the
interleaving, the summaries and the output every probe shares.

The modules are built from the configs in python-workers/src/dops_worker/configs/sdxl-base (or
another folder with ``unet/`` and ``vae/``) with random weights, on ``device`` (``meta``: no
weights, no memory). The inputs are those of a ``batch``-image request at ``size``² with CFG:
``2 × batch`` UNet rows, the text and added-condition widths read from the UNet's config.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[3]
CONFIGS = ROOT / "python-workers/src/dops_worker/configs/sdxl-base"


def build(device: str, dtype: Any, configs: Path = CONFIGS) -> tuple[Any, Any]:
    """``(unet, vae)`` in eval mode, random weights (seeded by the caller), on ``device`` in ``dtype``."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    with torch.device(device):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(configs / "unet")).to(dtype).eval()
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(configs / "vae")).to(dtype).eval()
    return unet, vae


@dataclass
class Inputs:
    sample: Any
    timestep: Any
    hidden: Any
    added: dict[str, Any]
    latents: Any

    def unet_call(self, fn: Any) -> Any:
        """``fn`` (the UNet, eager or compiled) on the CFG batch; its sample output."""
        return fn(self.sample, self.timestep, self.hidden, added_cond_kwargs=self.added, return_dict=False)[0]

    def decode_call(self, fn: Any) -> Any:
        """``fn`` (``vae.decode``, eager or compiled) on the batch's latents; its images."""
        return fn(self.latents, return_dict=False)[0]


def inputs(unet: Any, vae: Any, size: int, batch: int, device: str, dtype: Any) -> Inputs:
    """Random inputs of one UNet call (``2 × batch`` rows) and one decode (``batch`` latents) at ``size``²."""
    import torch

    rows, side = 2 * batch, size // 2 ** (len(vae.config.block_out_channels) - 1)
    config = unet.config
    text_embeds = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
    return Inputs(
        sample=torch.randn(rows, config.in_channels, side, side, device=device, dtype=dtype),
        timestep=torch.tensor(500.0, device=device),
        hidden=torch.randn(rows, 77, config.cross_attention_dim, device=device, dtype=dtype),
        added={"text_embeds": torch.randn(rows, text_embeds, device=device, dtype=dtype),
               "time_ids": torch.randn(rows, 6, device=device, dtype=dtype)},
        latents=torch.randn(batch, vae.config.latent_channels, side, side, device=device, dtype=dtype),
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every probe takes: ``--size``, ``--inductor``, ``--configs``, ``--device``, ``--out``."""
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--inductor", default="conv1x1")
    parser.add_argument("--configs", default=str(CONFIGS), help="a folder with unet/ and vae/ configs")
    parser.add_argument("--device", default="cuda", help="cpu (float32) only to try the script on a tiny config")
    parser.add_argument("--out", default="")


@dataclass
class Probe:
    device: str
    dtype: Any
    gpu: str
    unet: Any
    vae: Any
    sync: Callable[[], None]

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")


def setup(device: str = "cuda", configs: Path | str = CONFIGS) -> Probe:
    """The worker's sources on the path, and the UNet and VAE of ``configs`` (seed 0; fp16 on CUDA,
    float32 on CPU) on ``device`` in channels_last, as the lane holds them."""
    sys.path.insert(0, str(ROOT / "python-workers/src"))
    import torch

    cuda = device.startswith("cuda")
    dtype = torch.float16 if cuda else torch.float32
    torch.manual_seed(0)
    unet, vae = build(device, dtype, Path(configs))
    for module in (unet, vae):
        module.to(memory_format=torch.channels_last)
    return Probe(device, dtype, torch.cuda.get_device_name() if cuda else device, unet, vae,
                 torch.cuda.synchronize if cuda else (lambda: None))


def compile_as_lane(fn: Any, call: Callable[[Any], Any], preset: str, mode: str,
                    sync: Callable[[], None]) -> tuple[Any, float]:
    """``fn`` compiled as dops_worker.inference.compiled compiles it (fullgraph, static shapes,
    inductor ``preset`` patched in, ``mode``) and warmed up with ``call`` as many times as the lane
    warms a decode up (CUDA-graph modes: run, then record); the compiled function and the seconds."""
    import torch
    import torch._inductor.config as inductor_config

    from dops_worker.inference.compiled import inductor_options, warm_up_calls

    with inductor_config.patch(inductor_options(preset)):
        started = time.perf_counter()
        compiled = torch.compile(fn, mode=mode, fullgraph=True, dynamic=False)
        for _ in range(warm_up_calls(mode)):
            call(compiled)
        sync()
    return compiled, round(time.perf_counter() - started, 1)


def ms_per_call(call: Callable[[Any], Any], fn: Any, repeats: int, sync: Callable[[], None]) -> float:
    """Wall milliseconds per ``call(fn)``, over ``repeats`` calls between two syncs."""
    sync()
    started = time.perf_counter()
    for _ in range(repeats):
        call(fn)
    sync()
    return (time.perf_counter() - started) / repeats * 1000


def in_turn(items: Sequence[T], index: int) -> Sequence[T]:
    """``items`` in round ``index``'s order: as given in even rounds, reversed in odd ones, so no side
    always runs first."""
    return items if index % 2 == 0 else items[::-1]


def ms_summary(ms: Mapping[str, list[float]]) -> dict[str, dict[str, Any]]:
    """Per case its median and every measurement (ms)."""
    return {name: {"median": round(statistics.median(values), 2), "all": [round(v, 2) for v in values]}
            for name, values in ms.items()}


def speed_over(ms: Mapping[str, list[float]], base: str) -> dict[str, float]:
    """Per case ``base``'s median ms ÷ the case's: its speed against ``base``."""
    reference = statistics.median(ms[base])
    return {name: round(reference / statistics.median(values), 3) for name, values in ms.items()}


def write_report(report: dict[str, Any], out: str) -> None:
    """``report`` as indented JSON to ``out`` (nothing when empty); probes rewrite it after each step."""
    if out:
        Path(out).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
