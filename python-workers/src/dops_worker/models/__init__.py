"""Model identification and loading (DESIGN §5): header-only identification, offline single-file
and diffusers-folder loading with shipped configs, and the RAM (pinned) tier."""

from .cache import LoadedPipeline, ModelCache, load_pipeline
from .identify import Identification, identify_file, identify_tensors
from .loader import build_pipeline, clip_tokenizer, read_state_dict
from .safetensors_header import SafetensorsHeader, TensorInfo, read_header

__all__ = [
    "Identification",
    "LoadedPipeline",
    "ModelCache",
    "SafetensorsHeader",
    "TensorInfo",
    "build_pipeline",
    "clip_tokenizer",
    "identify_file",
    "identify_tensors",
    "load_pipeline",
    "read_header",
    "read_state_dict",
]
