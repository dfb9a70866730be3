import sys

import pytest

from dops_worker.backends.directml_memory import (
    AdapterInfo,
    Luid,
    PdhInstance,
    adapter_dedicated_usage,
    dedicated_usage,
    enumerate_adapters,
    match_adapter,
    parse_instance_name,
    process_dedicated_usage,
    read_counter,
)

LUID_A = Luid(0x00000000, 0x0000D1A3)
LUID_B = Luid(0x00000000, 0x0000E2F0)


def test_parse_adapter_instance_name():
    assert parse_instance_name("luid_0x00000000_0x0000D1A3_phys_0") == PdhInstance(LUID_A, 0, None)
    assert parse_instance_name("luid_0x00000001_0x0000d1a3_phys_1") == PdhInstance(Luid(1, 0xD1A3), 1, None)


def test_parse_process_and_engine_instance_names():
    assert parse_instance_name("pid_4242_luid_0x00000000_0x0000D1A3_phys_0") == PdhInstance(LUID_A, 0, 4242)
    engine = parse_instance_name("pid_7_luid_0x00000000_0x0000D1A3_phys_0_eng_3_engtype_Compute")
    assert engine == PdhInstance(LUID_A, 0, 7)


@pytest.mark.parametrize("name", ["_Total", "", "luid_0xZZ_0x01_phys_0", "pid_x_luid_0x0_0x1_phys_0",
                                  "luid_0x00000000_0x0000D1A3"])
def test_names_that_are_not_adapter_instances(name):
    assert parse_instance_name(name) is None


def test_luid_device_id_prints_high_then_low():
    assert Luid(0x1, 0xD1A3).device_id == "luid:0x00000001:0x0000d1a3"


ADAPTER_SAMPLES = [
    ("luid_0x00000000_0x0000D1A3_phys_0", 3_000_000_000),
    ("luid_0x00000000_0x0000D1A3_phys_1", 500),  # linked-adapter second physical part
    ("luid_0x00000000_0x0000E2F0_phys_0", 7_000),
    ("_Total", 99_999_999_999),
]
PROCESS_SAMPLES = [
    ("pid_100_luid_0x00000000_0x0000D1A3_phys_0", 1_000_000),
    ("pid_100_luid_0x00000000_0x0000E2F0_phys_0", 5),
    ("pid_1000_luid_0x00000000_0x0000D1A3_phys_0", 777),  # the wildcard pid_100* also matches pid_1000
    ("pid_100_luid_0x00000000_0x0000D1A3_phys_1", 24),
]


def test_adapter_usage_sums_the_adapters_physical_parts_only():
    assert adapter_dedicated_usage(ADAPTER_SAMPLES, LUID_A) == 3_000_000_500
    assert adapter_dedicated_usage(ADAPTER_SAMPLES, LUID_B) == 7_000
    assert adapter_dedicated_usage(ADAPTER_SAMPLES, Luid(9, 9)) == 0
    assert adapter_dedicated_usage(PROCESS_SAMPLES, LUID_A) == 0  # process instances are not adapter totals


def test_process_usage_matches_exact_pid_and_luid():
    assert process_dedicated_usage(PROCESS_SAMPLES, 100, LUID_A) == 1_000_024
    assert process_dedicated_usage(PROCESS_SAMPLES, 100, LUID_B) == 5
    assert process_dedicated_usage(PROCESS_SAMPLES, 1000, LUID_A) == 777
    assert process_dedicated_usage(PROCESS_SAMPLES, 5, LUID_A) == 0


def adapter(description: str, luid: Luid, software: bool = False) -> AdapterInfo:
    return AdapterInfo(description, 0x10DE, 0x2684, 24 << 30, luid, software)


def test_match_adapter_by_name_and_occurrence():
    adapters = [adapter("NVIDIA GeForce RTX 4090", LUID_A), adapter("Microsoft Basic Render Driver", Luid(0, 1), True),
                adapter("NVIDIA GeForce RTX 4090", LUID_B)]
    names = ["NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 4090"]
    assert match_adapter(names, 0, adapters).luid == LUID_A
    assert match_adapter(names, 1, adapters).luid == LUID_B
    assert match_adapter(names, 2, adapters) is None
    assert adapters[0].vendor == "NVIDIA"


def test_match_adapter_falls_back_to_order_when_names_differ():
    adapters = [adapter("AMD Radeon RX 7900 XTX", LUID_A), adapter("Intel(R) Arc(TM) A770", LUID_B)]
    assert match_adapter(["AMD Radeon(TM) RX 7900 XTX", "Intel Arc A770"], 1, adapters).luid == LUID_B
    assert match_adapter(["Some GPU"], 0, adapters) is None  # counts differ: no guessing


@pytest.mark.skipif(sys.platform == "win32", reason="checks the non-Windows guard")
def test_windows_only_calls_raise_oserror_elsewhere():
    with pytest.raises(OSError):
        enumerate_adapters()
    with pytest.raises(OSError):
        read_counter(r"\GPU Adapter Memory(*)\Dedicated Usage")
    with pytest.raises(OSError):
        dedicated_usage(LUID_A, 1)
