"""Config folders and the CLIP tokenizer that single-file loading uses offline (see README.md)."""

from __future__ import annotations

from pathlib import Path

CONFIG_ROOT = Path(__file__).resolve().parent
CLIP_TOKENIZER_DIR = CONFIG_ROOT / "clip_tokenizer"
# Identification result → shipped config folder name (a folder under CONFIG_ROOT).
CONFIG_NAMES = ("sd15", "sd15-inpaint", "sdxl-base", "sdxl-refiner")

__all__ = ["CLIP_TOKENIZER_DIR", "CONFIG_NAMES", "CONFIG_ROOT"]
