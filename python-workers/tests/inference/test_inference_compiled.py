"""The compiled lane on CPU: its settings, the eager fallback, the routing by input shape, the
compiled VAE decode, channels_last and LoRAs fused in place without a recompile.

The lane runs only on CUDA (tools/bench/gpu measures inductor); here ``prepare_compiled_lane`` is
called with device "cuda:0" on CPU modules and either a stand-in "compiled" module that counts its
calls, or real ``torch.compile`` with the ``aot_eager`` backend: dynamo traces, guards and counts
graphs (``counters["stats"]["unique_graphs"]``) as it does in front of inductor, so "0 recompiles"
is measured, not assumed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dops_worker.inference.compiled import (
    DECODE_ATTR,
    CompileSettings,
    CompileShape,
    DecodeRouter,
    compile_settings,
    compiled_graphs,
    decode_fn,
    parse_shapes,
    prepare_compiled_lane,
    report_recompiles,
    router_of,
)
from dops_worker.inference.generate import GenerateHooks, generate
from dops_worker.inference.warm_up import pipeline_warm_up


def test_shapes_parse_in_order_without_repeats() -> None:
    assert parse_shapes(" 1024x1024@1, 832x1216@4,1024x1024@1,") == (
        CompileShape(1024, 1024, 1), CompileShape(832, 1216, 4))
    assert parse_shapes("") == ()


@pytest.mark.parametrize(("text", "reason"), [
    ("1024x1024", "is not WIDTHxHEIGHT@BATCH"),
    ("1024*1024@1", "is not WIDTHxHEIGHT@BATCH"),
    ("1020x1024@1", "multiples of 8"),
    ("1024x1024@0", "batch must be 1 to 64"),
    ("1024x1024@65", "batch must be 1 to 64"),
])
def test_bad_shapes_are_refused_naming_the_item(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as caught:
        parse_shapes(f"512x512@1,{text}")
    assert "DOPS_COMPILE_SHAPES" in str(caught.value) and text in str(caught.value)


def test_settings_from_the_environment() -> None:
    settings = compile_settings({"DOPS_COMPILE_SHAPES": "1024x1024@4", "DOPS_COMPILE_CACHE_DIR": "/var/dops/inductor"})
    assert settings == CompileSettings((CompileShape(1024, 1024, 4),), "default", "/var/dops/inductor")
    assert compile_settings({}).shapes == ()
    with pytest.raises(ValueError, match="DOPS_COMPILE_MODE"):
        compile_settings({"DOPS_COMPILE_MODE": "fastest"})
    defaults = compile_settings({})
    assert defaults.inductor == "conv1x1" and defaults.vae is True
    extras_off = compile_settings({"DOPS_COMPILE_INDUCTOR": "none", "DOPS_COMPILE_VAE": "0"})
    assert extras_off.inductor == "none" and extras_off.vae is False
    with pytest.raises(ValueError, match="DOPS_COMPILE_INDUCTOR"):
        compile_settings({"DOPS_COMPILE_INDUCTOR": "fast"})
    with pytest.raises(ValueError, match="DOPS_COMPILE_VAE"):
        compile_settings({"DOPS_COMPILE_VAE": "yes"})


def test_off_on_cpu_and_without_shapes(sdxl: Any) -> None:
    settings = CompileSettings((CompileShape(64, 64, 1),))
    assert prepare_compiled_lane(sdxl, "cpu", settings, _never) == {"compiled": False, "reason": "not cuda"}
    assert prepare_compiled_lane(sdxl, "cuda:0", CompileSettings(), _never)["compiled"] is False
    assert router_of(sdxl) is None


def _never(*_args: Any) -> None:
    raise AssertionError("must not warm up")


class _Counting(torch.nn.Module):
    """Stands in for torch.compile's module: runs the UNet and counts the calls."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module
        self.calls = 0

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.module(*args, **kwargs)


@pytest.fixture
def pipe(sdxl_dir: Path, load_pipeline: Any) -> Any:
    """A fresh SDXL pipeline of its own: the lane changes its modules (layout, the VAE's router)."""
    import diffusers

    return load_pipeline(sdxl_dir, diffusers.StableDiffusionXLPipeline)


@pytest.mark.parametrize("failing", ["compile", "warm-up"])
def test_a_failed_compile_leaves_the_model_eager(pipe: Any, failing: str, roots: tuple[Path, Path],
                                                 make_request: Any) -> None:
    eager = pipe.unet

    def compile_fn(module: Any, **_kwargs: Any) -> Any:
        if failing == "compile":
            raise RuntimeError("inductor: no C compiler")
        return _Counting(module)

    def warm_up(_router: Any, _shape: CompileShape) -> None:
        raise RuntimeError("backend compiler failed")

    report = prepare_compiled_lane(pipe, "cuda:0", CompileSettings((CompileShape(64, 64, 1),), cache_dir=str(roots[1])),
                                   warm_up, compile_fn=compile_fn)
    assert report["compiled"] is False and ("no C compiler" in report["error"] or "backend" in report["error"])
    assert pipe.unet is eager and router_of(pipe) is None
    result = generate(pipe, make_request(pipe, roots, width=64, height=64), device="cpu", hooks=GenerateHooks())
    assert len(result["images"]) == 1  # served eager


def test_requests_of_a_compiled_shape_run_compiled_others_eager(pipe: Any, roots: tuple[Path, Path],
                                                                make_request: Any) -> None:
    compiled: list[_Counting] = []

    def compile_fn(module: Any, **kwargs: Any) -> Any:
        assert kwargs == {"mode": "default", "fullgraph": True, "dynamic": False}
        compiled.append(_Counting(module))
        return compiled[-1]

    settings = CompileSettings((CompileShape(64, 64, 1), CompileShape(64, 64, 2)), cache_dir=str(roots[1] / "cache"))
    report = prepare_compiled_lane(pipe, "cuda:0", settings, pipeline_warm_up(pipe), compile_fn=compile_fn)
    assert report["compiled"] is True and report["shapes"] == ["64x64@1", "64x64@2"]
    assert report["signatures"] == 2 and (roots[1] / "cache").is_dir()
    assert report["vae"]["compiled"] is True and report["vae"]["signatures"] == 2
    counting = compiled[0]
    warm_calls = counting.calls
    assert warm_calls == 4  # 2 steps × 2 shapes

    def calls_for(**fields: Any) -> int:
        before = counting.calls
        generate(pipe, make_request(pipe, roots, **{"steps": 2, "cfgScale": 5, **fields}), device="cpu",
                 hooks=GenerateHooks())
        return counting.calls - before

    assert calls_for(width=64, height=64) == 2  # compiled, every step
    assert calls_for(width=64, height=64, batchCount=2) == 2
    assert calls_for(width=64, height=48) == 0  # another size: eager
    assert calls_for(width=64, height=64, batchCount=3) == 0  # another batch: eager
    assert calls_for(width=64, height=64, cfgScale=1) == 0  # no CFG: half the rows, eager
    assert pipe.unet is counting.module  # the model keeps its eager UNet; requests get the router


def test_compiled_and_eager_give_the_same_image_with_an_exact_stand_in(pipe: Any, sdxl: Any, sdxl_dir: Path,
                                                                      load_pipeline: Any, roots: tuple[Path, Path],
                                                                      make_request: Any) -> None:
    import diffusers

    request = {"width": 64, "height": 64, "seed": 5}
    same_layout = load_pipeline(sdxl_dir, diffusers.StableDiffusionXLPipeline)
    same_layout.unet.to(memory_format=torch.channels_last)
    same_layout.vae.to(memory_format=torch.channels_last)
    eager = generate(same_layout, make_request(same_layout, roots, **request), device="cpu", hooks=GenerateHooks())
    contiguous = generate(sdxl, make_request(sdxl, roots, **request), device="cpu", hooks=GenerateHooks())
    prepare_compiled_lane(pipe, "cuda:0", CompileSettings((CompileShape(64, 64, 1),), cache_dir=str(roots[1])),
                          pipeline_warm_up(pipe), compile_fn=lambda module, **_: _Counting(module))
    routed = generate(pipe, make_request(pipe, roots, **request), device="cpu", hooks=GenerateHooks())
    assert routed["images"][0]["sha256"] == eager["images"][0]["sha256"]
    # channels_last itself: oneDNN's convolutions sum in another order on this CPU.
    assert _max_level_difference(routed, contiguous) <= PIXEL_TOLERANCE


# --- channels_last ---------------------------------------------------------------------------------

# Images of the lane against eager on CPU in fp32: at most this many levels of 255 apart per
# channel. Only rounding differs (channels_last convolutions, fused LoRA weights (W + s·BA)x
# against PEFT's Wx + s·B(Ax), aot_eager's decompositions): relative errors of about 1e-6, so a
# pixel lands on the other side of a rounding boundary at most.
PIXEL_TOLERANCE = 1


def _max_level_difference(first: dict[str, Any], second: dict[str, Any]) -> int:
    return int(np.abs(_pixels(first).astype(int) - _pixels(second).astype(int)).max())


def _pixels(result: dict[str, Any], index: int = 0) -> np.ndarray:
    from PIL import Image

    with Image.open(result["images"][index]["path"]) as image:
        return np.asarray(image.convert("RGB"))


def _convolution_weights(module: torch.nn.Module) -> list[torch.Tensor]:
    return [parameter for parameter in module.parameters() if parameter.dim() == 4 and parameter.shape[-1] > 1]


def _channels_last(module: torch.nn.Module) -> bool:
    return all(weight.is_contiguous(memory_format=torch.channels_last) for weight in _convolution_weights(module))


def _contiguous(module: torch.nn.Module) -> bool:
    return all(weight.is_contiguous() for weight in _convolution_weights(module))


def test_the_lane_puts_unet_and_vae_in_channels_last_and_again_after_a_ram_tier_round_trip(
        dynamo: None, pipe: Any, roots: tuple[Path, Path]) -> None:
    assert _contiguous(pipe.unet) and _contiguous(pipe.vae) and _convolution_weights(pipe.unet)
    settings = CompileSettings((CompileShape(64, 64, 1),), cache_dir=str(roots[1]))
    report = prepare_compiled_lane(pipe, "cuda:0", settings, pipeline_warm_up(pipe), compile_fn=_aot_eager)
    assert report["compiled"] is True and report["channelsLast"] is True and report["vae"]["compiled"] is True
    assert _channels_last(pipe.unet) and _channels_last(pipe.vae)
    graphs = compiled_graphs()
    # What models/cache.py does to a model going to RAM and back: each parameter's data replaced by
    # the copy it held (taken at load, contiguous), moved with .to(device) (which keeps a layout).
    held = [(tensor, tensor.data.contiguous().clone()) for module in (pipe.unet, pipe.vae)
            for tensor in [*module.parameters(), *module.buffers()]]
    for tensor, cpu in held:
        tensor.data = cpu.to("cpu")
    assert _contiguous(pipe.unet)
    again = prepare_compiled_lane(pipe, "cuda:0", settings, pipeline_warm_up(pipe), compile_fn=_never_compile)
    assert again["compiled"] is True and again["vae"]["compiled"] is True  # the compiled code reused
    assert _channels_last(pipe.unet) and _channels_last(pipe.vae)
    assert compiled_graphs() == graphs  # the guards pass: same layout, so nothing compiled again


def test_module_to_keeps_channels_last() -> None:
    """The model host's moves (``module.to(device)`` / ``.to(dtype)``: the OOM plan's restore, the
    VAE's fp32 retry) keep the layout: preserve_format is torch's default."""
    conv = torch.nn.Conv2d(4, 8, 3).to(memory_format=torch.channels_last)
    conv.to("cpu")
    conv.to(dtype=torch.float64)
    conv.to(dtype=torch.float32)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not conv.weight.is_contiguous()


def _never_compile(*_args: Any, **_kwargs: Any) -> Any:
    raise AssertionError("the lane's compiled code must be reused")


# --- with dynamo: recompiles counted, LoRAs fused in place -----------------------------------------

def _aot_eager(target: Any, **kwargs: Any) -> Any:
    """torch.compile as the lane calls it, with the aot_eager backend (mode is inductor's only)."""
    assert kwargs["fullgraph"] is True and kwargs["dynamic"] is False
    return torch.compile(target, backend="aot_eager", fullgraph=True, dynamic=False)


@pytest.fixture
def dynamo() -> Any:
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _weights(module: torch.nn.Module) -> dict[str, tuple[torch.Tensor, int]]:
    return {name: (tensor.detach().clone(), tensor.data_ptr()) for name, tensor in module.state_dict().items()}


def _same_weights(module: torch.nn.Module, before: dict[str, tuple[torch.Tensor, int]]) -> bool:
    after = module.state_dict()
    return after.keys() == before.keys() and all(
        torch.equal(after[name], value) and after[name].dtype == value.dtype and after[name].data_ptr() == pointer
        for name, (value, pointer) in before.items())


@pytest.fixture(scope="module")
def sd15_conv_lora(sd15_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A peft LoRA of the tiny SD 1.5 UNet's attention *and* convolutions (resnets, the 4-D
    proj_in/proj_out): fusing writes into channels_last 4-D weights too."""
    import diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    directory = tmp_path_factory.mktemp("conv-lora")
    unet = diffusers.UNet2DConditionModel.from_pretrained(str(sd15_dir / "unet"), local_files_only=True)
    torch.manual_seed(4)
    unet.add_adapter(LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                                target_modules=["to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2", "proj_in",
                                                "proj_out"]))
    diffusers.StableDiffusionPipeline.save_lora_weights(
        str(directory), unet_lora_layers=get_peft_model_state_dict(unet), weight_name="conv-lora.safetensors",
        safe_serialization=True)
    return directory / "conv-lora.safetensors"


GENERATED = Path(__file__).resolve().parents[3] / "tools/fixtures/generated"


@pytest.mark.parametrize("generated", [False, True], ids=["sd15-tiny", "generated-sd15-tiny"])
def test_a_lora_request_on_the_compiled_lane_fuses_in_place_without_a_recompile(
        generated: bool, dynamo: None, sd15_dir: Path, load_pipeline: Any, sd15_conv_lora: Path,
        sd15_text_encoder_lora: Path, roots: tuple[Path, Path], make_request: Any) -> None:
    import diffusers

    source = GENERATED / "sd15-tiny-diffusers" if generated else sd15_dir
    if not source.is_dir():
        pytest.skip("tools/fixtures/generated absent")
    loras = ([{"path": str(GENERATED / "lora-kohya-sd15-tiny.safetensors"), "weight": 0.8}] if generated else
             [{"path": str(sd15_conv_lora), "weight": 0.7}, {"path": str(sd15_text_encoder_lora), "weight": 1.0}])
    eager = load_pipeline(source, diffusers.StableDiffusionPipeline)
    laned = load_pipeline(source, diffusers.StableDiffusionPipeline)
    request = {"width": 64, "height": 64, "steps": 2, "cfgScale": 5, "seed": 7}
    report = prepare_compiled_lane(laned, "cuda:0", CompileSettings((CompileShape(64, 64, 1),), cache_dir=str(roots[1])),
                                   pipeline_warm_up(laned), compile_fn=_counted(_aot_eager))
    assert report["compiled"] is True and report["vae"]["compiled"] is True, report
    router = router_of(laned)
    assert router is not None
    counting = router.compiled

    def run(pipe: Any, **fields: Any) -> dict[str, Any]:
        return generate(pipe, make_request(pipe, roots, **{**request, **fields}), device="cpu", hooks=GenerateHooks())

    plain_before = run(laned)
    weights = _weights(laned.unet)
    graphs = compiled_graphs()
    calls = counting.calls
    with_lora = run(laned, loras=loras)
    assert counting.calls - calls == 2  # both steps went to the compiled UNet
    assert compiled_graphs() == graphs and router.recompiles() == 0 and report_recompiles(laned) == 0
    assert _same_weights(laned.unet, weights)  # bit for bit, in the same tensors
    assert not any("lora" in name for name, _ in laned.unet.named_modules())
    assert not any("lora" in name for name, _ in laned.text_encoder.named_modules())
    plain_after = run(laned)
    assert plain_after["images"][0]["sha256"] == plain_before["images"][0]["sha256"]
    assert compiled_graphs() == graphs

    reference = run(eager, loras=loras)  # the PEFT path on an eager model
    assert _max_level_difference(with_lora, reference) <= PIXEL_TOLERANCE
    assert _max_level_difference(plain_before, run(eager)) <= PIXEL_TOLERANCE
    assert _max_level_difference(with_lora, plain_before) > 4 * PIXEL_TOLERANCE  # the LoRAs changed the image


def test_a_lora_that_fails_to_load_on_the_lane_leaves_the_weights_and_the_graph(
        dynamo: None, sd15_dir: Path, load_pipeline: Any, sd15_lora: Path, roots: tuple[Path, Path],
        make_request: Any, tmp_path: Path) -> None:
    import diffusers
    from safetensors.torch import save_file

    from dops_worker.protocol.errors import WorkerError

    laned = load_pipeline(sd15_dir, diffusers.StableDiffusionPipeline)
    prepare_compiled_lane(laned, "cuda:0", CompileSettings((CompileShape(64, 64, 1),), cache_dir=str(roots[1])),
                          pipeline_warm_up(laned), compile_fn=_aot_eager)
    router = router_of(laned)
    weights = _weights(laned.unet)
    graphs = compiled_graphs()
    broken = tmp_path / "not-a-lora.safetensors"
    save_file({"something.else": torch.zeros(3)}, str(broken))
    with pytest.raises(WorkerError):
        generate(laned, make_request(laned, roots, width=64, height=64,
                                     loras=[{"path": str(sd15_lora)}, {"path": str(broken)}]),
                 device="cpu", hooks=GenerateHooks())
    assert _same_weights(laned.unet, weights)
    assert not any("lora" in name for name, _ in laned.unet.named_modules())
    generate(laned, make_request(laned, roots, width=64, height=64), device="cpu", hooks=GenerateHooks())
    assert compiled_graphs() == graphs and router is not None and router.recompiles() == 0


def test_a_failure_while_fusing_restores_the_weights(dynamo: None, sd15_dir: Path, load_pipeline: Any,
                                                     sd15_lora: Path, roots: tuple[Path, Path], make_request: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import diffusers

    laned = load_pipeline(sd15_dir, diffusers.StableDiffusionPipeline)
    prepare_compiled_lane(laned, "cuda:0", CompileSettings((CompileShape(64, 64, 1),), cache_dir=str(roots[1])),
                          pipeline_warm_up(laned), compile_fn=_aot_eager)
    weights = _weights(laned.unet)
    unet_class = type(laned.unet)
    fuse_lora = unet_class.fuse_lora

    def fuse_then_fail(self: Any, *args: Any, **kwargs: Any) -> None:
        fuse_lora(self, *args, **kwargs)  # the weights are written
        raise RuntimeError("fusing failed half way")

    monkeypatch.setattr(unet_class, "fuse_lora", fuse_then_fail)
    with pytest.raises(RuntimeError, match="half way"):
        generate(laned, make_request(laned, roots, width=64, height=64, loras=[{"path": str(sd15_lora)}]),
                 device="cpu", hooks=GenerateHooks())
    assert _same_weights(laned.unet, weights)  # no LoRA layer left, every weight as it was
    router = router_of(laned)
    assert router is not None and laned.unet is router.eager


def test_requests_of_other_shapes_and_modes_compile_nothing(dynamo: None, pipe: Any, roots: tuple[Path, Path],
                                                            make_request: Any, write_image: Any) -> None:
    prepare_compiled_lane(pipe, "cuda:0", CompileSettings((CompileShape(64, 64, 1),), cache_dir=str(roots[1])),
                          pipeline_warm_up(pipe), compile_fn=_aot_eager)
    graphs = compiled_graphs()
    write_image(roots[0] / "init.png", (64, 64))
    for fields in ({}, {"width": 64, "height": 48}, {"batchCount": 2}, {"cfgScale": 1},
                   {"mode": "img2img", "initImage": "init.png", "strength": 0.5}):
        generate(pipe, make_request(pipe, roots, **{"width": 64, "height": 64, "cfgScale": 5, **fields}),
                 device="cpu", hooks=GenerateHooks())
    assert compiled_graphs() == graphs and report_recompiles(pipe) == 0


@pytest.mark.parametrize("scheduler", ["Euler a", "DPM++ 2M Karras", "DDIM", "UniPC", "LCM"])
def test_every_scheduler_runs_compiled_on_the_euler_warm_up_without_a_recompile(
        scheduler: str, dynamo: None, pipe: Any, sdxl: Any, roots: tuple[Path, Path], make_request: Any) -> None:
    """The warm-up runs Euler (float timesteps); others step on int64 ones, which the router hands
    the graph as float32 (the UNet's time embedding computes in float32 either way)."""
    prepare_compiled_lane(pipe, "cuda:0", CompileSettings((CompileShape(64, 64, 1),), cache_dir=str(roots[1])),
                          pipeline_warm_up(pipe), compile_fn=_counted(_aot_eager))
    router = router_of(pipe)
    assert router is not None
    graphs, calls = compiled_graphs(), router.compiled.calls
    request = {"width": 64, "height": 64, "cfgScale": 5, "steps": 3, "seed": 3, "scheduler": scheduler}
    routed = generate(pipe, make_request(pipe, roots, **request), device="cpu", hooks=GenerateHooks())
    assert router.compiled.calls - calls == 3 and compiled_graphs() == graphs
    eager = generate(sdxl, make_request(sdxl, roots, **request), device="cpu", hooks=GenerateHooks())
    assert _max_level_difference(routed, eager) <= PIXEL_TOLERANCE


def test_a_controlnet_request_of_a_warmed_up_size_runs_eager_and_compiles_nothing(
        dynamo: None, sd15_dir: Path, load_pipeline: Any, roots: tuple[Path, Path], make_request: Any,
        write_image: Any, tmp_path: Path) -> None:
    """The ControlNet's residuals are UNet inputs the warm-up graph has not: routed eager."""
    import diffusers

    laned = load_pipeline(sd15_dir, diffusers.StableDiffusionPipeline)
    torch.manual_seed(2)
    controlnet = diffusers.ControlNetModel.from_unet(laned.unet, conditioning_embedding_out_channels=(8, 16))
    controlnet.save_pretrained(str(tmp_path / "cn"))
    write_image(roots[0] / "control.png", (64, 64))
    prepare_compiled_lane(laned, "cuda:0", CompileSettings((CompileShape(64, 64, 1),), cache_dir=str(roots[1])),
                          pipeline_warm_up(laned), compile_fn=_counted(_aot_eager))
    router = router_of(laned)
    assert router is not None
    graphs, calls = compiled_graphs(), router.compiled.calls
    spec = {"path": str(tmp_path / "cn"), "image": "control.png", "conditioningScale": 0.8}
    generate(laned, make_request(laned, roots, width=64, height=64, cfgScale=5, controlnets=[spec]), device="cpu",
             hooks=GenerateHooks())
    assert router.compiled.calls == calls and compiled_graphs() == graphs
    generate(laned, make_request(laned, roots, width=64, height=64, cfgScale=5), device="cpu", hooks=GenerateHooks())
    assert router.compiled.calls == calls + 2 and compiled_graphs() == graphs


# --- the compiled VAE decode -----------------------------------------------------------------------

def _counted(compile_fn: Any) -> Any:
    return lambda target, **kwargs: _Counting(compile_fn(target, **kwargs))


def test_the_decode_runs_compiled_for_a_warmed_up_shape_and_eager_otherwise(
        dynamo: None, pipe: Any, roots: tuple[Path, Path]) -> None:
    settings = CompileSettings((CompileShape(64, 64, 1), CompileShape(64, 48, 2)), cache_dir=str(roots[1]))
    report = prepare_compiled_lane(pipe, "cuda:0", settings, pipeline_warm_up(pipe), compile_fn=_counted(_aot_eager))
    assert report["vae"]["compiled"] is True and report["vae"]["signatures"] == 2
    assert set(report["vae"]["warmUpS"]) == {"64x64@1", "64x48@2"} and report["vae"]["compileS"] >= 0
    vae = pipe.vae
    decode = decode_fn(vae)
    assert isinstance(decode, DecodeRouter)
    counting = decode.compiled
    graphs = compiled_graphs()
    factor = 2 ** (len(vae.config.block_out_channels) - 1)

    def latents(batch: int, width: int, height: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.randn(batch, 4, height // factor, width // factor, generator=torch.Generator().manual_seed(1),
                           dtype=dtype)

    def compiled_calls(z: torch.Tensor) -> int:
        before = counting.calls
        with torch.no_grad():
            out = decode_fn(vae)(z, return_dict=False)[0]
            expected = vae.decode(z, return_dict=False)[0]
        assert out.shape == expected.shape and out.dtype == expected.dtype
        assert float((out - expected).abs().max()) <= 1e-5  # of [-1, 1]: rounding only
        return counting.calls - before

    assert compiled_calls(latents(1, 64, 64)) == 1
    assert compiled_calls(latents(2, 64, 48)) == 1
    assert compiled_calls(latents(1, 64, 48)) == 0  # warmed at batch 2 only
    assert compiled_calls(latents(1, 48, 64)) == 0
    vae.to(dtype=torch.float64)  # the upcast retry (fp16 → fp32 on CUDA)
    try:
        assert compiled_calls(latents(1, 64, 64, torch.float64)) == 0
    finally:
        vae.to(dtype=torch.float32)
    vae.enable_tiling()
    try:
        assert decode.target(latents(1, 64, 64)) == vae.decode
    finally:
        vae.disable_tiling()
    assert compiled_calls(latents(1, 64, 64)) == 1  # back as warmed up: compiled, guards pass
    assert compiled_graphs() == graphs


def test_a_request_decodes_through_the_compiled_decode(dynamo: None, pipe: Any, sdxl: Any, roots: tuple[Path, Path],
                                                        make_request: Any) -> None:
    report = prepare_compiled_lane(pipe, "cuda:0", CompileSettings((CompileShape(64, 64, 1),), cache_dir=str(roots[1])),
                                   pipeline_warm_up(pipe), compile_fn=_counted(_aot_eager))
    decode = decode_fn(pipe.vae)
    assert report["vae"]["compiled"] is True and isinstance(decode, DecodeRouter)
    graphs = compiled_graphs()
    before = decode.compiled.calls
    routed = generate(pipe, make_request(pipe, roots, width=64, height=64, seed=5), device="cpu", hooks=GenerateHooks())
    assert decode.compiled.calls - before == 1
    other = generate(pipe, make_request(pipe, roots, width=64, height=48, seed=5), device="cpu", hooks=GenerateHooks())
    assert decode.compiled.calls - before == 1 and len(other["images"]) == 1
    assert compiled_graphs() == graphs
    eager = generate(sdxl, make_request(sdxl, roots, width=64, height=64, seed=5), device="cpu", hooks=GenerateHooks())
    assert _max_level_difference(routed, eager) <= PIXEL_TOLERANCE


@pytest.mark.parametrize("failing", ["compile", "warm-up"])
def test_a_failed_decode_compile_leaves_the_unet_lane_and_an_eager_vae(
        failing: str, pipe: Any, roots: tuple[Path, Path], make_request: Any) -> None:
    unet_compiled: list[_Counting] = []

    def compile_fn(target: Any, **_kwargs: Any) -> Any:
        if isinstance(target, torch.nn.Module):
            unet_compiled.append(_Counting(target))
            return unet_compiled[-1]
        if failing == "compile":
            raise RuntimeError("inductor: decode lowering failed")
        return _Counting(target)

    def decode_warm_up(_router: Any, _shape: CompileShape) -> None:
        raise RuntimeError("decode warm-up failed")

    report = prepare_compiled_lane(pipe, "cuda:0", CompileSettings((CompileShape(64, 64, 1),), cache_dir=str(roots[1])),
                                   pipeline_warm_up(pipe), compile_fn=compile_fn, decode_warm_up=decode_warm_up)
    assert report["compiled"] is True and report["vae"]["compiled"] is False
    assert "decode" in report["vae"]["error"]
    assert router_of(pipe) is not None and _channels_last(pipe.unet)
    assert decode_fn(pipe.vae) == pipe.vae.decode and not hasattr(pipe.vae, DECODE_ATTR)
    assert _contiguous(pipe.vae)  # as it was
    before = unet_compiled[0].calls
    result = generate(pipe, make_request(pipe, roots, width=64, height=64), device="cpu", hooks=GenerateHooks())
    assert len(result["images"]) == 1 and unet_compiled[0].calls - before == 2


def test_the_decode_compile_can_be_turned_off(pipe: Any, roots: tuple[Path, Path]) -> None:
    settings = compile_settings({"DOPS_COMPILE_SHAPES": "64x64@1", "DOPS_COMPILE_VAE": "0",
                                 "DOPS_COMPILE_CACHE_DIR": str(roots[1])})
    report = prepare_compiled_lane(pipe, "cuda:0", settings, pipeline_warm_up(pipe),
                                   compile_fn=lambda module, **_: _Counting(module))
    assert report["compiled"] is True and report["vae"] == {"compiled": False, "reason": "DOPS_COMPILE_VAE=0"}
    assert decode_fn(pipe.vae) == pipe.vae.decode and _contiguous(pipe.vae)


# --- inductor settings -----------------------------------------------------------------------------

@pytest.mark.parametrize(("preset", "expected"), [
    ("conv1x1", {"conv_1x1_as_mm": True, "coordinate_descent_tuning": False}),
    ("diffusers", {"conv_1x1_as_mm": True, "coordinate_descent_tuning": True, "epilogue_fusion": False,
                   "coordinate_descent_check_all_directions": True}),
    ("none", {"conv_1x1_as_mm": False, "coordinate_descent_tuning": False}),
])
def test_inductor_settings_hold_while_compiling_only(preset: str, expected: dict[str, Any], pipe: Any,
                                                     roots: tuple[Path, Path]) -> None:
    import torch._inductor.config as inductor_config

    defaults = {name: getattr(inductor_config, name) for name in expected}
    seen: dict[str, Any] = {}

    def warm_up(_router: Any, _shape: CompileShape) -> None:
        seen.update({name: getattr(inductor_config, name) for name in expected})

    settings = compile_settings({"DOPS_COMPILE_SHAPES": "64x64@1", "DOPS_COMPILE_INDUCTOR": preset,
                                 "DOPS_COMPILE_CACHE_DIR": str(roots[1])})
    report = prepare_compiled_lane(pipe, "cuda:0", settings, warm_up, compile_fn=lambda module, **_: _Counting(module))
    assert report["inductor"] == preset and seen == expected
    assert {name: getattr(inductor_config, name) for name in expected} == defaults


@pytest.mark.parametrize(("mode", "calls"), [("default", 1), ("max-autotune-no-cudagraphs", 1),
                                             ("reduce-overhead", 2), ("max-autotune", 2)])
def test_cuda_graph_modes_warm_the_decode_up_twice_so_recording_happens_at_load(
        mode: str, calls: int, pipe: Any, roots: tuple[Path, Path]) -> None:
    seen: list[CompileShape] = []
    settings = compile_settings({"DOPS_COMPILE_SHAPES": "64x64@1,64x64@2", "DOPS_COMPILE_MODE": mode,
                                 "DOPS_COMPILE_CACHE_DIR": str(roots[1])})
    report = prepare_compiled_lane(pipe, "cuda:0", settings, lambda _router, _shape: None,
                                   compile_fn=lambda module, **_: _Counting(module),
                                   decode_warm_up=lambda _router, shape: seen.append(shape))
    assert report["vae"]["compiled"] is True and report["mode"] == mode
    assert seen == [CompileShape(64, 64, 1)] * calls + [CompileShape(64, 64, 2)] * calls
