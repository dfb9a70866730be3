"""Read and validate a ``.safetensors`` header without reading any tensor data.

Format: 8-byte little-endian header length N, N bytes of JSON
``{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}``, then the data.
Offsets are relative to the end of the header and must tile the data without overlap.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from dops_worker.protocol.errors import ErrorCode, WorkerError

# The reference implementation refuses headers over 100 MB; so do we.
MAX_HEADER_BYTES = 100_000_000
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2,
               "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    path: Path
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str] = field(default_factory=dict)
    data_start: int = 0
    file_size: int = 0

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: info.shape for name, info in self.tensors.items()}


def _corrupt(path: Path, field_name: str, reason: str) -> WorkerError:
    # ``reason`` is one of the fixed phrases below and never carries a value read from the file
    # (a length, a name, a dtype): a request naming a file that is not a safetensors file must
    # learn nothing of its contents (the 8 bytes of a "header length" were once /etc/shadow's).
    return WorkerError(ErrorCode.INVALID_ARGUMENT, f"{field_name}: {path.name} is not a safetensors file: {reason}",
                       details={"field": field_name, "path": str(path), "reason": reason})


def read_header(path: str | os.PathLike[str], field_name: str = "path") -> SafetensorsHeader:
    """Parse and validate the header; throws WorkerError NOT_FOUND or INVALID_ARGUMENT (with the
    reason) naming ``field_name``."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise _corrupt(path, field_name, "shorter than the 8-byte header length")
            (length,) = struct.unpack("<Q", prefix)
            if length > MAX_HEADER_BYTES:
                raise _corrupt(path, field_name, f"the header length exceeds {MAX_HEADER_BYTES} bytes")
            if 8 + length > size:
                raise _corrupt(path, field_name, "the header runs past the end of the file")
            raw = handle.read(length)
    except FileNotFoundError as error:
        raise WorkerError(ErrorCode.NOT_FOUND, f"{field_name}: {path}: no such file",
                          details={"field": field_name}) from error
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _corrupt(path, field_name, "the header is not JSON") from error
    if not isinstance(header, dict):
        raise _corrupt(path, field_name, "the header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _corrupt(path, field_name, "__metadata__ must map strings to strings")
    data_size = size - 8 - length
    tensors: dict[str, TensorInfo] = {}
    for name, entry in header.items():
        try:
            dtype, shape, (begin, end) = entry["dtype"], tuple(entry["shape"]), entry["data_offsets"]
        except (KeyError, TypeError, ValueError) as error:
            raise _corrupt(path, field_name, "a tensor lacks dtype/shape/data_offsets") from error
        if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:
            raise _corrupt(path, field_name, "a tensor has an unknown dtype")
        if not all(isinstance(n, int) and n >= 0 for n in shape):
            raise _corrupt(path, field_name, "a tensor has a bad shape")
        if not (isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end):
            raise _corrupt(path, field_name, "a tensor has bad data_offsets")
        if end - begin != math.prod(shape) * DTYPE_BYTES[dtype]:
            raise _corrupt(path, field_name, "a tensor's byte size does not match its shape and dtype")
        if end > data_size:
            raise _corrupt(path, field_name, "a tensor ends past the data: truncated")
        tensors[name] = TensorInfo(dtype, shape, begin, end)
    previous_end = 0
    for info in sorted(tensors.values(), key=lambda info: (info.begin, info.end)):
        if info.begin < previous_end:
            raise _corrupt(path, field_name, "two tensors overlap")
        previous_end = info.end
    return SafetensorsHeader(path, tensors, dict(metadata), 8 + length, size)
