"""The baseline of tools/bench/cold_load: a plain diffusers load of the same single file.

``<pipeline>.from_single_file`` (the class the config folder's ``model_index.json`` names) with that
config folder and the shipped CLIP tokenizer(s) (offline), no safety checker; float32 on the CPU,
fp16 moved to the GPU with ``--device cuda`` — what a script that does not use dops would do to get
a pipeline it can run. Each timed load builds a fresh pipeline from the file
(page cache warm, as on the service side); warm-up loads are not counted (they include diffusers'
own lazy imports).

  .venv/bin/python tools/bench/cold_load/plain_load.py --model M --config-dir D [--device cpu|cuda] [--n 10] [--warmup 2]
Prints one JSON object on stdout: {python, torch, diffusers, threads, loads: [seconds...]}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "python-workers" / "src"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--config-dir", required=True, help="the diffusers config folder of the model's base")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()

    import diffusers
    import torch

    from dops_worker.models.loader import clip_tokenizer

    index = json.loads((Path(args.config_dir) / "model_index.json").read_text())
    pipeline_class = getattr(diffusers, index["_class_name"])
    extra: dict = {"tokenizer": clip_tokenizer()}
    if "tokenizer_2" in index:
        extra["tokenizer_2"] = clip_tokenizer("!")  # SDXL's second tokenizer pads with "!"
    if "safety_checker" in index:
        extra.update(safety_checker=None, requires_safety_checker=False)
    dtype = torch.float16 if args.device == "cuda" else torch.float32

    def load() -> float:
        started = time.perf_counter()
        pipe = pipeline_class.from_single_file(args.model, config=args.config_dir, local_files_only=True,
                                               torch_dtype=dtype, **extra)
        pipe.to(args.device)
        if args.device == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - started
        del pipe
        return elapsed

    diffusers.utils.logging.disable_progress_bar()
    for _ in range(args.warmup):
        load()
    loads = [load() for _ in range(args.n)]
    print(json.dumps({"python": sys.version.split()[0], "torch": torch.__version__, "diffusers": diffusers.__version__,
                      "threads": torch.get_num_threads(), "loads": loads}))


if __name__ == "__main__":
    main()
