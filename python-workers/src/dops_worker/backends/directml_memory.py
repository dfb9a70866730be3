"""DirectML VRAM: totals from DXGI, usage from the Windows PDH "GPU ... Memory" counters.

torch-directml has no memory API. The pure parts (instance-name parsing, matching to an adapter
LUID, summing, adapter matching) are plain functions tested on every OS; the ctypes parts
(``enumerate_adapters``, ``read_counter``) run on Windows only and raise OSError elsewhere.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

ADAPTER_DEDICATED_COUNTER = r"\GPU Adapter Memory(*)\Dedicated Usage"
PROCESS_DEDICATED_COUNTER = r"\GPU Process Memory(pid_{pid}*)\Dedicated Usage"

# "luid_0x00000000_0x0000D1A3_phys_0", optionally "pid_1234_" before it and "_eng_3_engtype_3D"
# (GPU Engine counters) after it.
_INSTANCE = re.compile(
    r"^(?:pid_(?P<pid>\d+)_)?luid_0x(?P<high>[0-9a-f]{1,8})_0x(?P<low>[0-9a-f]{1,8})_phys_(?P<phys>\d+)(?:_.*)?$",
    re.IGNORECASE,
)

_VENDORS = {0x10DE: "NVIDIA", 0x1002: "AMD", 0x1022: "AMD", 0x8086: "Intel", 0x1414: "Microsoft",
            0x5143: "Qualcomm"}


@dataclass(frozen=True, order=True)
class Luid:
    """A Windows adapter LUID; PDH instance names print ``HighPart`` first."""

    high: int
    low: int

    @property
    def device_id(self) -> str:
        """The dops device id, ``luid:0xHHHHHHHH:0xLLLLLLLL``."""
        return f"luid:0x{self.high:08x}:0x{self.low:08x}"


@dataclass(frozen=True)
class PdhInstance:
    luid: Luid
    phys: int
    pid: int | None = None


@dataclass(frozen=True)
class AdapterInfo:
    description: str
    vendor_id: int
    device_id: int
    dedicated_video_memory: int
    luid: Luid
    software: bool = False

    @property
    def vendor(self) -> str:
        return _VENDORS.get(self.vendor_id, f"0x{self.vendor_id:04x}")


def parse_instance_name(name: str) -> PdhInstance | None:
    """The LUID, physical adapter index and (process counters) pid in a PDH instance name; None if not one."""
    match = _INSTANCE.match(name.strip())
    if match is None:
        return None
    pid = match.group("pid")
    return PdhInstance(
        luid=Luid(int(match.group("high"), 16), int(match.group("low"), 16)),
        phys=int(match.group("phys")),
        pid=int(pid) if pid is not None else None,
    )


def adapter_dedicated_usage(samples: Iterable[tuple[str, int]], luid: Luid) -> int:
    """Sum of ``GPU Adapter Memory`` samples belonging to ``luid`` (all its physical parts)."""
    total = 0
    for name, value in samples:
        instance = parse_instance_name(name)
        if instance is not None and instance.pid is None and instance.luid == luid:
            total += max(0, int(value))
    return total


def process_dedicated_usage(samples: Iterable[tuple[str, int]], pid: int, luid: Luid) -> int:
    """Sum of ``GPU Process Memory`` samples of process ``pid`` on ``luid``."""
    total = 0
    for name, value in samples:
        instance = parse_instance_name(name)
        if instance is not None and instance.pid == pid and instance.luid == luid:
            total += max(0, int(value))
    return total


def match_adapter(dml_names: Sequence[str], index: int, adapters: Sequence[AdapterInfo]) -> AdapterInfo | None:
    """The DXGI adapter behind torch_directml device ``index``.

    torch_directml names devices by adapter description; with identical cards the n-th device of
    a name is the n-th hardware adapter of that name (both enumerate in DXGI order).
    """
    if not 0 <= index < len(dml_names):
        return None
    name = dml_names[index].strip()
    occurrence = sum(1 for earlier in dml_names[:index] if earlier.strip() == name)
    same_name = [a for a in adapters if not a.software and a.description.strip() == name]
    if occurrence < len(same_name):
        return same_name[occurrence]
    hardware = [a for a in adapters if not a.software]
    # Names can differ (driver suffixes); fall back to enumeration order when counts agree.
    return hardware[index] if len(hardware) == len(dml_names) else None


# Windows only below. -------------------------------------------------------------------------


def _require_windows() -> None:
    if sys.platform != "win32":
        raise OSError("DXGI and PDH exist only on Windows")


def enumerate_adapters() -> list[AdapterInfo]:
    """All DXGI adapters in enumeration order (IDXGIFactory1::EnumAdapters1). Raises OSError on failure."""
    _require_windows()
    import ctypes
    from ctypes import (
        POINTER,
        Structure,
        byref,
        c_long,
        c_size_t,
        c_ubyte,
        c_uint,
        c_uint16,
        c_uint32,
        c_ulong,
        c_void_p,
    )

    class GUID(Structure):
        _fields_ = [("Data1", c_uint32), ("Data2", c_uint16), ("Data3", c_uint16), ("Data4", c_ubyte * 8)]

    class LUID(Structure):
        _fields_ = [("LowPart", c_uint32), ("HighPart", ctypes.c_int32)]

    class DXGI_ADAPTER_DESC1(Structure):  # noqa: N801 - the Windows name
        _fields_ = [
            ("Description", ctypes.c_wchar * 128),
            ("VendorId", c_uint), ("DeviceId", c_uint), ("SubSysId", c_uint), ("Revision", c_uint),
            ("DedicatedVideoMemory", c_size_t), ("DedicatedSystemMemory", c_size_t),
            ("SharedSystemMemory", c_size_t), ("AdapterLuid", LUID), ("Flags", c_uint),
        ]

    def method(obj: c_void_p, slot: int, restype, *argtypes):
        vtable = ctypes.cast(obj, POINTER(POINTER(c_void_p)))[0]
        return ctypes.WINFUNCTYPE(restype, c_void_p, *argtypes)(vtable[slot])

    iid_factory1 = GUID(0x770AAE78, 0xF26F, 0x4DBA, (c_ubyte * 8)(0xA8, 0x29, 0x25, 0x3C, 0x83, 0xD1, 0xB3, 0x87))
    dxgi = ctypes.WinDLL("dxgi.dll")  # type: ignore[attr-defined]
    factory = c_void_p()
    hr = dxgi.CreateDXGIFactory1(byref(iid_factory1), byref(factory))
    if hr < 0:
        raise OSError(f"CreateDXGIFactory1 failed: 0x{hr & 0xFFFFFFFF:08x}")
    dxgi_error_not_found = -2005270526  # 0x887A0002
    adapters: list[AdapterInfo] = []
    try:
        enum_adapters1 = method(factory, 12, c_long, c_uint, POINTER(c_void_p))  # IDXGIFactory1 slot 12
        index = 0
        while True:
            adapter = c_void_p()
            hr = enum_adapters1(factory, index, byref(adapter))
            if hr == dxgi_error_not_found:
                break
            if hr < 0:
                raise OSError(f"EnumAdapters1({index}) failed: 0x{hr & 0xFFFFFFFF:08x}")
            try:
                desc = DXGI_ADAPTER_DESC1()
                hr = method(adapter, 10, c_long, POINTER(DXGI_ADAPTER_DESC1))(adapter, byref(desc))  # GetDesc1
                if hr < 0:
                    raise OSError(f"GetDesc1 failed: 0x{hr & 0xFFFFFFFF:08x}")
                adapters.append(AdapterInfo(
                    description=desc.Description,
                    vendor_id=desc.VendorId,
                    device_id=desc.DeviceId,
                    dedicated_video_memory=int(desc.DedicatedVideoMemory),
                    luid=Luid(desc.AdapterLuid.HighPart & 0xFFFFFFFF, desc.AdapterLuid.LowPart),
                    software=bool(desc.Flags & 0x2),  # DXGI_ADAPTER_FLAG_SOFTWARE
                ))
            finally:
                method(adapter, 2, c_ulong)(adapter)  # Release
            index += 1
    finally:
        method(factory, 2, c_ulong)(factory)
    return adapters


def read_counter(path: str) -> list[tuple[str, int]]:
    """``(instance name, value)`` for every instance of a PDH counter path with wildcards.

    No instance (the process has not touched the GPU yet) is an empty list. Raises OSError when PDH fails.
    """
    _require_windows()
    import ctypes
    from ctypes import POINTER, Structure, Union, byref, c_double, c_long, c_longlong, c_uint32, c_void_p

    class _Value(Union):
        _fields_ = [("longValue", c_long), ("doubleValue", c_double), ("largeValue", c_longlong),
                    ("AnsiStringValue", ctypes.c_char_p), ("WideStringValue", ctypes.c_wchar_p)]

    class PDH_FMT_COUNTERVALUE(Structure):  # noqa: N801
        _fields_ = [("CStatus", c_uint32), ("value", _Value)]

    class PDH_FMT_COUNTERVALUE_ITEM_W(Structure):  # noqa: N801
        _fields_ = [("szName", ctypes.c_wchar_p), ("FmtValue", PDH_FMT_COUNTERVALUE)]

    pdh_fmt_large, pdh_more_data, pdh_no_data = 0x400, 0x800007D2, 0x800007D5
    pdh_cstatus_invalid_data, pdh_cstatus_no_instance = 0xC0000BBA, 0x800007D1
    pdh = ctypes.WinDLL("pdh.dll")  # type: ignore[attr-defined]
    for name in ("PdhOpenQueryW", "PdhAddEnglishCounterW", "PdhCollectQueryData",
                 "PdhGetFormattedCounterArrayW", "PdhCloseQuery"):
        getattr(pdh, name).restype = c_uint32

    query = c_void_p()
    status = pdh.PdhOpenQueryW(None, None, byref(query))
    if status != 0:
        raise OSError(f"PdhOpenQueryW failed: 0x{status:08x}")
    try:
        counter = c_void_p()
        status = pdh.PdhAddEnglishCounterW(query, ctypes.c_wchar_p(path), None, byref(counter))
        if status == pdh_cstatus_no_instance:
            return []
        if status != 0:
            raise OSError(f"PdhAddEnglishCounterW({path}) failed: 0x{status:08x}")
        status = pdh.PdhCollectQueryData(query)
        if status == pdh_no_data:
            return []
        if status != 0:
            raise OSError(f"PdhCollectQueryData failed: 0x{status:08x}")
        size, count = ctypes.c_uint32(0), ctypes.c_uint32(0)
        status = pdh.PdhGetFormattedCounterArrayW(counter, pdh_fmt_large, byref(size), byref(count), None)
        if status in (pdh_no_data, pdh_cstatus_invalid_data) or (status == 0 and count.value == 0):
            return []
        if status != pdh_more_data:
            raise OSError(f"PdhGetFormattedCounterArrayW failed: 0x{status:08x}")
        buffer = (ctypes.c_byte * size.value)()
        status = pdh.PdhGetFormattedCounterArrayW(counter, pdh_fmt_large, byref(size), byref(count), buffer)
        if status != 0:
            raise OSError(f"PdhGetFormattedCounterArrayW failed: 0x{status:08x}")
        items = ctypes.cast(buffer, POINTER(PDH_FMT_COUNTERVALUE_ITEM_W * count.value))[0]
        return [(item.szName, int(item.FmtValue.value.largeValue)) for item in items
                if item.FmtValue.CStatus in (0, 1)]  # PDH_CSTATUS_VALID_DATA, PDH_CSTATUS_NEW_DATA
    finally:
        pdh.PdhCloseQuery(query)


def dedicated_usage(luid: Luid, pid: int) -> tuple[int, int]:
    """``(adapter dedicated usage, process dedicated usage)`` in bytes. Raises OSError off Windows."""
    adapter = adapter_dedicated_usage(read_counter(ADAPTER_DEDICATED_COUNTER), luid)
    process = process_dedicated_usage(read_counter(PROCESS_DEDICATED_COUNTER.format(pid=pid)), pid, luid)
    return adapter, process
