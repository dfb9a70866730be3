"""Which config folder builds a single-file checkpoint: the one named after the file first (the
config of that one model), then the one named after its identification (sd15, sdxl-base, …)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dops_worker.models.identify import Identification
from dops_worker.models.loader import build_pipeline, resolve_config_folder
from dops_worker.protocol.errors import WorkerError

SD15 = Identification("checkpoint", "sd15", "normal", "sd15")


def config_root(tmp_path: Path, *names: str) -> Path:
    for name in names:
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "model_index.json").write_text("{}")
    return tmp_path


def test_a_folder_named_after_the_checkpoint_comes_before_its_kind(tmp_path: Path) -> None:
    root = config_root(tmp_path, "sd15", "mine")
    assert resolve_config_folder(SD15, Path("/models/mine.safetensors"), root) == root / "mine"
    assert resolve_config_folder(SD15, Path("/models/other.safetensors"), root) == root / "sd15"


def test_a_folder_without_model_index_is_not_a_config(tmp_path: Path) -> None:
    root = config_root(tmp_path, "sd15")
    (root / "mine").mkdir()
    assert resolve_config_folder(SD15, Path("/models/mine.safetensors"), root) == root / "sd15"
    with pytest.raises(WorkerError):
        resolve_config_folder(SD15, Path("/models/x.safetensors"), config_root(tmp_path / "empty"))


def test_the_trained_model_and_the_random_one_share_a_config_root(fixtures_dir: Path, tiny_configs: Path) -> None:
    """Both are SD 1.5 single files of different widths; each loads from the same config root."""
    if not (fixtures_dir / "digits-sd15.safetensors").is_file():
        pytest.skip("no trained digits model in the fixtures")
    trained = build_pipeline(fixtures_dir / "digits-sd15.safetensors", config_dir=tiny_configs).pipeline
    tiny = build_pipeline(fixtures_dir / "sd15-tiny.safetensors", config_dir=tiny_configs).pipeline
    assert list(trained.unet.config.block_out_channels) == [32, 64]
    assert list(tiny.unet.config.block_out_channels) == [16, 32]
