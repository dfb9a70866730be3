"""Tiny-model fixtures: generated once per session by tools/fixtures/generate.py (a few seconds),
or taken from DOPS_FIXTURES_DIR when set. Everything runs offline on CPU."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before any Hugging Face import reads it
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import json
import socket
import subprocess
import sys
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
    subprocess.run([sys.executable, str(GENERATOR), "--out", str(out)], check=True, capture_output=True)
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
