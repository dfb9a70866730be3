import sys
import types

import pytest

from dops_worker.backends import selection
from dops_worker.backends.selection import Availability, resolve_backend
from dops_worker.protocol.errors import ErrorCode, InvalidParams, WorkerError

NOTHING = Availability(gpu=False, hip=False, directml=False)
CUDA = Availability(gpu=True, hip=False, directml=False)
ROCM = Availability(gpu=True, hip=True, directml=False)
DML = Availability(gpu=False, hip=False, directml=True)
CUDA_AND_DML = Availability(gpu=True, hip=False, directml=True)


@pytest.mark.parametrize(("available", "expected"), [
    (NOTHING, "cpu"), (CUDA, "cuda"), (ROCM, "rocm"), (DML, "directml"), (CUDA_AND_DML, "cuda"),
])
def test_auto_prefers_gpu_then_directml_then_cpu(available, expected):
    assert resolve_backend("auto", available) == expected


@pytest.mark.parametrize(("requested", "available"), [
    ("cuda", CUDA), ("rocm", ROCM), ("directml", DML), ("directml", CUDA_AND_DML), ("cpu", NOTHING), ("cpu", CUDA),
])
def test_explicit_backend_that_is_usable(requested, available):
    assert resolve_backend(requested, available) == requested


@pytest.mark.parametrize(("requested", "available"), [
    ("cuda", NOTHING), ("cuda", ROCM), ("rocm", CUDA), ("rocm", NOTHING), ("directml", CUDA),
])
def test_explicit_backend_that_is_not_usable_fails_precondition(requested, available):
    with pytest.raises(WorkerError) as info:
        resolve_backend(requested, available)
    assert info.value.code is ErrorCode.FAILED_PRECONDITION
    assert info.value.details["field"] == "backend"


def test_unknown_backend_names_the_field():
    with pytest.raises(InvalidParams) as info:
        resolve_backend("tpu", NOTHING, field="DOPS_BACKEND")
    assert info.value.field == "DOPS_BACKEND"


def fake_torch(monkeypatch, *, cuda: bool, hip: str | None):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.version, "hip", hip, raising=False)


def test_detect_availability_reads_torch_without_importing_directml(monkeypatch):
    fake_torch(monkeypatch, cuda=True, hip="6.2.41133")
    monkeypatch.delitem(sys.modules, "torch_directml", raising=False)
    found = types.SimpleNamespace(name="torch_directml")
    monkeypatch.setattr(selection.importlib.util, "find_spec", lambda name: found if name == "torch_directml" else None)
    assert selection.detect_availability() == Availability(gpu=True, hip=True, directml=True)
    assert "torch_directml" not in sys.modules
    assert resolve_backend("auto", selection.detect_availability()) == "rocm"


def test_detect_availability_on_a_plain_cpu_build(monkeypatch):
    fake_torch(monkeypatch, cuda=False, hip=None)
    monkeypatch.setattr(selection.importlib.util, "find_spec", lambda name: None)
    assert selection.detect_availability() == NOTHING


def test_env_parsing(monkeypatch):
    monkeypatch.delenv("DOPS_BACKEND", raising=False)
    monkeypatch.delenv("DOPS_DEVICE_INDEX", raising=False)
    assert selection.requested_backend_from_env() == "auto"
    assert selection.device_index_from_env() == 0
    monkeypatch.setenv("DOPS_BACKEND", " CUDA ")
    monkeypatch.setenv("DOPS_DEVICE_INDEX", "2")
    assert selection.requested_backend_from_env() == "cuda"
    assert selection.device_index_from_env() == 2
    monkeypatch.setenv("DOPS_DEVICE_INDEX", "-1")
    with pytest.raises(InvalidParams) as info:
        selection.device_index_from_env()
    assert info.value.field == "DOPS_DEVICE_INDEX"


def test_cpu_lane_never_imports_directml_and_has_one_device():
    pytest.importorskip("torch")
    from dops_worker.backends.factory import create_backend

    backend = create_backend("cpu", 0)
    assert backend.torch_device == "cpu"
    assert "torch_directml" not in sys.modules
    assert "dops_worker.backends.directml" not in sys.modules
    with pytest.raises(InvalidParams) as info:
        create_backend("cpu", 1)
    assert info.value.field == "deviceIndex"
