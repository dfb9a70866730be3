"""Artifacts are owner-only whatever the umask: 0600 files in folders the worker creates 0700."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask():
    previous = os.umask(0o022)  # what a worker would inherit without its own umask(0o077)
    yield
    os.umask(previous)


def test_png_and_byte_artifacts_are_0600_in_new_0700_folders(tmp_path: Path, loose_umask: None) -> None:
    from PIL import Image

    from dops_worker.inference.artifacts import write_png
    from dops_worker.postprocessing.operations import write_bytes

    root = tmp_path / "artifacts"
    root.mkdir(mode=0o755)
    png = Path(write_png(Image.new("RGB", (4, 4)), root / "job" / "stage", "a.png", {})["path"])
    raw = Path(write_bytes(b"jpeg bytes", root / "job" / "other", "b.jpg", (4, 4), "jpeg")["path"])
    assert _mode(png) == _mode(raw) == 0o600
    for folder in (root / "job", root / "job" / "stage", root / "job" / "other"):
        assert _mode(folder) == 0o700, folder
    assert _mode(root) == 0o755  # the operator's root is left as it is
    assert [p.name for p in png.parent.iterdir()] == ["a.png"]  # no temp file left behind
