"""Tiny-model fixtures: generated once per session by tools/fixtures/generate.py (a few seconds),
or taken from DOPS_FIXTURES_DIR when set. Everything runs offline on CPU."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before any Hugging Face import reads it
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import importlib.util
import json
import socket
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[3]
GENERATOR = REPO / "tools" / "fixtures" / "generate.py"


@pytest.fixture(scope="session")
def fixtures_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    preset = os.environ.get("DOPS_FIXTURES_DIR")
    if preset:
        return Path(preset)
    out = tmp_path_factory.mktemp("fixtures") / "generated"
    # In-process: the session imports torch/diffusers/transformers anyway; a subprocess would pay
    # for them a second time. Global torch state the generator touches is restored afterwards.
    spec = importlib.util.spec_from_file_location("dops_fixture_generate", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    deterministic, threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.use_deterministic_algorithms(True)  # as generate.py's main(): same bytes as the CLI
        torch.set_num_threads(2)
        try:
            module.generate(out)
        finally:
            torch.use_deterministic_algorithms(deterministic)
            torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="session")
def manifest(fixtures_dir: Path) -> dict[str, dict]:
    return json.loads((fixtures_dir / "manifest.json").read_text())["files"]


@pytest.fixture(scope="session")
def tiny_configs(fixtures_dir: Path) -> Path:
    return fixtures_dir / "configs"


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(1)  # tiny ops: threads only add sync cost, worse on a busy host


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[1:] if len(args) > 1 else args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
