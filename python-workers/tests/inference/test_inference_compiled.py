"""The compiled lane on CPU: its settings, the eager fallback and the routing by input shape.

torch.compile itself runs only on CUDA (tools/bench/gpu measures it); here a stand-in "compiled"
module counts its calls, so the routing and the fallback are checked without a compiler.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch

from dops_worker.inference.compiled import (
    LANE_ATTR,
    CompileSettings,
    CompileShape,
    compile_settings,
    parse_shapes,
    prepare_compiled_lane,
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
def pipe(sdxl: Any) -> Any:
    clone = copy.copy(sdxl)  # its own attributes (the lane), the same modules
    yield clone
    if hasattr(clone, LANE_ATTR):
        delattr(clone, LANE_ATTR)


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
        return compiled[0]

    settings = CompileSettings((CompileShape(64, 64, 1), CompileShape(64, 64, 2)), cache_dir=str(roots[1] / "cache"))
    report = prepare_compiled_lane(pipe, "cuda:0", settings, pipeline_warm_up(pipe), compile_fn=compile_fn)
    assert report["compiled"] is True and report["shapes"] == ["64x64@1", "64x64@2"]
    assert report["signatures"] == 2 and (roots[1] / "cache").is_dir()
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


def test_compiled_and_eager_give_the_same_image_with_an_exact_stand_in(pipe: Any, sdxl: Any, roots: tuple[Path, Path],
                                                                      make_request: Any) -> None:
    eager = generate(sdxl, make_request(sdxl, roots, width=64, height=64, seed=5), device="cpu", hooks=GenerateHooks())
    prepare_compiled_lane(pipe, "cuda:0", CompileSettings((CompileShape(64, 64, 1),), cache_dir=str(roots[1])),
                          pipeline_warm_up(pipe), compile_fn=lambda module, **_: _Counting(module))
    routed = generate(pipe, make_request(pipe, roots, width=64, height=64, seed=5), device="cpu", hooks=GenerateHooks())
    assert routed["images"][0]["sha256"] == eager["images"][0]["sha256"]
