"""Roots, tiny images and the tiny postprocessing fixtures (tools/fixtures/generate.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
pytest.importorskip("spandrel")
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[3]
GENERATED = REPO / "tools/fixtures/generated"
UPSCALER = "upscaler-compact-2x-tiny.safetensors"
FACE = "face-restoreformer-tiny.safetensors"
FLAGS_ALL = "safety-checker-tiny-flags-all"
PASSES_ALL = "safety-checker-tiny-passes-all"


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Copies of the generated fixtures, so a concurrent regeneration cannot pull them away mid-test."""
    missing = [n for n in (UPSCALER, FACE, FLAGS_ALL, PASSES_ALL) if not (GENERATED / n).exists()]
    if missing:
        pytest.skip(f"run `python tools/fixtures/generate.py` (missing {', '.join(missing)})")
    folder = tmp_path_factory.mktemp("pp-models")
    for name in (UPSCALER, FACE):
        shutil.copy(GENERATED / name, folder / name)
    for name in (FLAGS_ALL, PASSES_ALL):
        shutil.copytree(GENERATED / name, folder / name)
    return folder


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    input_root, output_root = tmp_path / "inputs", tmp_path / "artifacts"
    input_root.mkdir()
    output_root.mkdir()
    return input_root, output_root


def noise_image(path: Path, width: int, height: int, *, seed: int = 1, mode: str = "RGB") -> Path:
    """A smooth-ish random image (a small noise field scaled up), saved by extension."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(max(height // 4, 1), max(width // 4, 1), 3), dtype=np.uint8)
    image = Image.fromarray(small, "RGB").resize((width, height), Image.Resampling.BICUBIC)
    if mode == "RGBA":
        image = image.convert("RGBA")
        image.putalpha(Image.linear_gradient("L").resize((width, height)))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


class FakeBackend:
    torch_device = "cpu"


class FakeSession:
    backend = FakeBackend()


def context(notes: list[tuple[str, Any]], token: Any = None) -> Any:
    from dops_worker.runtime.cancellation import CancelToken
    from dops_worker.runtime.context import RequestContext

    return RequestContext(request_id=9, method="postprocess.run", token=token or CancelToken(),
                          session=FakeSession(), notify=lambda name, params: notes.append((name, params)),
                          status=dict)
