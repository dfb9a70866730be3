"""Capability probe that computes on the device instead of trusting what the backend claims."""

from __future__ import annotations

import logging
from typing import Any

_log = logging.getLogger(__name__)

# Relative error allowed versus the fp32 result (bf16 keeps 8 mantissa bits: ~0.4% per element).
_TOLERANCE = {"float16": 1e-2, "bfloat16": 5e-2, "float64": 1e-5}
_SDPA_NAMES = (("FLASH_ATTENTION", "sdpa-flash"), ("EFFICIENT_ATTENTION", "sdpa-mem-efficient"),
               ("MATH", "sdpa-math"))


def probe_capabilities(torch_device: str, backend: str) -> dict[str, Any]:
    """``{fp16, bf16, fp64, generatorDevice, attention, torchDevice}``; never raises.

    Each dtype flag is True only if a matmul in that dtype on the device matches fp32 on the CPU.
    ``device`` may be a torch_directml device string ("privateuseone:0").
    """
    import torch

    device = torch.device(torch_device)
    return {
        "fp16": dtype_works(device, torch.float16),
        "bf16": dtype_works(device, torch.bfloat16),
        "fp64": dtype_works(device, torch.float64),
        "generatorDevice": generator_device(device),
        "attention": attention_kernel(device, backend),
        "torchDevice": torch_device,
    }


def dtype_works(device: Any, dtype: Any) -> bool:
    """Matmul in ``dtype`` on ``device`` agrees with fp32 on the CPU."""
    import torch

    try:
        generator = torch.Generator().manual_seed(0)
        a = torch.rand(32, 48, generator=generator) - 0.5
        b = torch.rand(48, 16, generator=generator) - 0.5
        expected = a @ b
        got = (a.to(device=device, dtype=dtype) @ b.to(device=device, dtype=dtype)).to("cpu", torch.float32)
        if not bool(torch.isfinite(got).all()):
            return False
        error = (got - expected).abs().max().item() / max(expected.abs().max().item(), 1e-6)
        return error <= _TOLERANCE.get(str(dtype).removeprefix("torch."), 1e-2)
    except Exception as exc:  # unsupported dtypes raise many different errors per backend
        _log.debug("dtype probe failed", extra={"dtype": str(dtype), "error": repr(exc)})
        return False


def generator_device(device: Any) -> str:
    """``"cuda"`` when a torch.Generator can live on (and sample into) a CUDA/ROCm device, else ``"cpu"``."""
    import torch

    if device.type != "cuda":
        return "cpu"
    try:
        generator = torch.Generator(device=device).manual_seed(0)
        torch.randn(8, generator=generator, device=device).sum().item()
        return "cuda"
    except Exception as exc:
        _log.debug("device generator unusable", extra={"error": repr(exc)})
        return "cpu"


def attention_kernel(device: Any, backend: str) -> str:
    """The fastest scaled_dot_product_attention kernel that runs and agrees with plain math attention.

    cuda/rocm try flash, then memory-efficient, then math (fp16); other devices try sdpa in fp32
    ("sdpa-math"). "math" means only the hand-written attention works.
    """
    import torch
    import torch.nn.functional as F

    dtype = torch.float16 if device.type == "cuda" else torch.float32
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.rand(1, 2, 16, 64, generator=generator) - 0.5 for _ in range(3))
    reference = torch.softmax(q @ k.transpose(-2, -1) / 8.0, dim=-1) @ v
    q_d, k_d, v_d = (t.to(device=device, dtype=dtype) for t in (q, k, v))

    def agrees(out: Any) -> bool:
        return bool(torch.allclose(out.to("cpu", torch.float32), reference, atol=2e-2, rtol=2e-2))

    if device.type == "cuda":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        for enum_name, label in _SDPA_NAMES:
            kernel = getattr(SDPBackend, enum_name, None)
            if kernel is None:
                continue
            try:
                with sdpa_kernel(kernel):
                    if agrees(F.scaled_dot_product_attention(q_d, k_d, v_d)):
                        return label
            except Exception as exc:
                _log.debug("sdpa kernel unusable", extra={"kernel": label, "error": repr(exc)})
    else:
        try:
            if agrees(F.scaled_dot_product_attention(q_d, k_d, v_d)):
                return "sdpa-math"
        except Exception as exc:
            _log.debug("sdpa unusable", extra={"backend": backend, "error": repr(exc)})
    return "math"
