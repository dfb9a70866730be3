import types

import pytest

from dops_worker.backends.cpu import cpu_name, cpu_vendor, read_cpuinfo
from dops_worker.backends.cuda import stable_device_id

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9654 96-Core Processor
flags\t\t: fpu vme

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: something else
"""


def test_read_cpuinfo_first_block(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    info = read_cpuinfo(str(path))
    assert cpu_name(info) == "AMD EPYC 9654 96-Core Processor"
    assert cpu_vendor(info) == "AMD"
    assert cpu_vendor({"vendor_id": "GenuineIntel"}) == "Intel"
    assert read_cpuinfo(str(tmp_path / "missing")) == {}
    assert cpu_name({})  # falls back to platform, never empty


def test_cuda_stable_ids_prefer_pci_then_uuid_then_ordinal():
    props = types.SimpleNamespace(pci_domain_id=0, pci_bus_id=0x41, pci_device_id=0, uuid="abc")
    assert stable_device_id(props, 0) == "pci:0000:41:00.0"
    assert stable_device_id(types.SimpleNamespace(pci_bus_id=None, uuid="GPU-1234"), 0) == "uuid:GPU-1234"
    assert stable_device_id(types.SimpleNamespace(), 3) == "ordinal:3"


def test_capability_probe_computes_on_cpu():
    torch = pytest.importorskip("torch")
    from dops_worker.backends.capabilities import attention_kernel, dtype_works, probe_capabilities

    cpu = torch.device("cpu")
    assert dtype_works(cpu, torch.float64) is True
    assert dtype_works(cpu, torch.float32) is True
    caps = probe_capabilities("cpu", "cpu")
    assert set(caps) == {"fp16", "bf16", "fp64", "generatorDevice", "attention", "torchDevice"}
    assert caps["generatorDevice"] == "cpu" and caps["torchDevice"] == "cpu"
    assert attention_kernel(cpu, "cpu") == "sdpa-math"


def test_dtype_probe_reports_false_when_the_device_computes_wrong(monkeypatch):
    torch = pytest.importorskip("torch")
    from dops_worker.backends import capabilities

    real_matmul = torch.Tensor.__matmul__
    monkeypatch.setattr(torch.Tensor, "__matmul__",
                        lambda a, b: real_matmul(a, b) * (2 if a.dtype == torch.float16 else 1))
    assert capabilities.dtype_works(torch.device("cpu"), torch.float16) is False
    assert capabilities.dtype_works(torch.device("cpu"), torch.float64) is True


def test_dtype_probe_reports_false_when_the_dtype_raises(monkeypatch):
    torch = pytest.importorskip("torch")
    from dops_worker.backends import capabilities

    def boom(a, b):
        raise RuntimeError('"addmm_impl_cpu_" not implemented for \'Half\'')

    monkeypatch.setattr(torch.Tensor, "__matmul__", boom)
    assert capabilities.dtype_works(torch.device("cpu"), torch.float16) is False


def test_sdpa_failure_falls_back_to_math(monkeypatch):
    torch = pytest.importorskip("torch")
    from dops_worker.backends import capabilities

    def broken(*args, **kwargs):
        raise RuntimeError("no kernel")

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", broken)
    assert capabilities.attention_kernel(torch.device("cpu"), "directml") == "math"
