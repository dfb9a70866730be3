import pytest

from dops_worker.protocol.errors import ERROR_CODES, ErrorCode, WorkerError, classify_exception, is_out_of_memory

DESIGN_CODES = ["INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS", "FAILED_PRECONDITION", "OUT_OF_MEMORY",
                "RESOURCE_EXHAUSTED", "CANCELLED", "DEADLINE_EXCEEDED", "UNAVAILABLE", "UNSUPPORTED", "INTERNAL",
                # The security issue's two: no credential, and a credential without the role.
                "UNAUTHENTICATED", "PERMISSION_DENIED"]


def test_error_table_is_exactly_the_design_table():
    assert [code.value for code in ErrorCode] == DESIGN_CODES
    assert ERROR_CODES == frozenset(DESIGN_CODES)
    assert all(code.name == code.value for code in ErrorCode)


def test_worker_error_data_and_defaults():
    error = WorkerError("UNAVAILABLE", "busy")
    assert error.code is ErrorCode.UNAVAILABLE and error.retryable and not error.fatal
    assert error.to_data() == {"code": "UNAVAILABLE", "retryable": True, "fatal": False}
    invalid = WorkerError(ErrorCode.INVALID_ARGUMENT, "bad", details={"field": "steps"})
    assert not invalid.retryable
    assert invalid.to_data()["details"] == {"field": "steps"}
    assert WorkerError(ErrorCode.CANCELLED, "c", retryable=True, fatal=True).to_data() == {
        "code": "CANCELLED", "retryable": True, "fatal": True}
    with pytest.raises(ValueError):
        WorkerError("NOT_A_CODE", "x")


def test_torch_cuda_out_of_memory_error_is_oom():
    torch = pytest.importorskip("torch")
    exc = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert is_out_of_memory(exc)
    error = classify_exception(exc)
    assert error.code is ErrorCode.OUT_OF_MEMORY and error.retryable and not error.fatal


def test_oom_subclass_recognised_by_type_even_with_unrelated_message():
    torch = pytest.importorskip("torch")
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("allocation failed"))


@pytest.mark.parametrize("message", [
    "HIP out of memory. Tried to allocate 20.00 MiB (GPU 0; 15.98 GiB total capacity)",
    "Could not allocate tensor with 52428800 bytes. There is not enough GPU video memory available!",
    "CUDA out of memory. Tried to allocate 1.50 GiB",
    "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes.",
])
def test_backend_oom_runtime_errors_are_oom(message):
    assert is_out_of_memory(RuntimeError(message))
    assert classify_exception(RuntimeError(message)).code is ErrorCode.OUT_OF_MEMORY


def test_memory_error_is_oom():
    assert classify_exception(MemoryError()).code is ErrorCode.OUT_OF_MEMORY


@pytest.mark.parametrize("exc", [
    RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)"),
    ValueError("out of memory"),  # only RuntimeErrors carry allocator messages
    KeyError("memory"),
])
def test_other_errors_are_not_oom(exc):
    assert not is_out_of_memory(exc)
    error = classify_exception(exc)
    assert error.code is ErrorCode.INTERNAL and not error.retryable and not error.fatal
    assert type(exc).__name__ in error.message


@pytest.mark.parametrize("message", [
    "CUDA error: an illegal memory access was encountered",
    "The GPU device instance has been suspended. Use GetDeviceRemovedReason (0x887A0005)",
])
def test_device_lost_is_fatal_unavailable(message):
    error = classify_exception(RuntimeError(message))
    assert error.code is ErrorCode.UNAVAILABLE and error.fatal and error.retryable


def test_worker_error_passes_through_classification():
    original = WorkerError(ErrorCode.NOT_FOUND, "no such model")
    assert classify_exception(original) is original
