"""The baseline of tools/bench/overhead: the same diffusers pipeline the worker runs, called
directly in Python, for the same request.

The model is loaded with the project's loader exactly as the worker's ``model.load`` does on the
cpu backend (``ModelCache("cpu", torch.float32).load(path, config_dir=...)``), the pipeline is
the one ``inference.generate`` assembles (``assemble_pipeline`` with ``make_scheduler``), and
``pipe(...)`` gets the arguments the worker passes (prompt, negative prompt or None, steps,
guidance, one image, a CPU generator seeded with the seed, width, height) — except that it
decodes itself (``output_type="pil"``; the assembled pipeline has no safety checker, so this is
the worker's own latent → VAE → PIL decode) and has no step callback (progress/cancel are part
of the service path being measured).

Variants, each timed per case after warm-up runs:
  pipe      pipe(...) only
  pipePng   pipe(...) then the worker's PNG writer (write_image: the same metadata chunks,
            compress_level 4, temp file + fsync + rename, sha256) — what the service path also does
  generate  (--with-generate) the worker's own generate() in-process (validation, fresh scheduler, callbacks,
            latent decode, PNG) — splits the overhead into "worker code" and "transport"

  .venv/bin/python tools/bench/overhead/direct.py --model M --config-dir D --cases '[{...}]' [--n 15]
Prints one JSON object on stdout: {python, torch, diffusers, threads, load_s, cases: [...]}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "python-workers" / "src"))


def stats(samples: list[float]) -> dict[str, Any]:
    ordered = sorted(samples)
    q = lambda p: ordered[min(len(ordered) - 1, int(p * len(ordered)))]  # noqa: E731 - same rule as overhead.ts
    return {"n": len(ordered), "medianS": round(statistics.median(ordered), 5), "p90S": round(q(0.9), 5),
            "minS": round(ordered[0], 5), "maxS": round(ordered[-1], 5)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--config-dir", default=None)
    parser.add_argument("--model-id", default="sd15-tiny")
    parser.add_argument("--cases", required=True, help="JSON list of worker-style params (camelCase)")
    parser.add_argument("--n", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out-dir", default=None)
    parser.add_argument("--with-generate", action="store_true", help="also time the worker's generate() in-process")
    args = parser.parse_args()

    import diffusers
    import torch

    from dops_worker.inference.artifacts import write_image
    from dops_worker.inference.generate import generate
    from dops_worker.inference.pipelines import assemble_pipeline, limits_for_pipeline
    from dops_worker.inference.request import parse_generate_request
    from dops_worker.inference.schedulers import make_scheduler
    from dops_worker.models.cache import ModelCache

    started = time.perf_counter()
    # As dops_worker.models.methods on the cpu backend: device "cpu", float32.
    loaded = ModelCache("cpu", torch.float32).load(Path(args.model).resolve(), config_dir=args.config_dir)
    load_s = time.perf_counter() - started
    base_pipe = loaded.pipeline
    out_root = Path(args.out_dir or tempfile.mkdtemp(prefix="dops-overhead-direct-"))

    results = []
    for case in json.loads(args.cases):
        params = {"model": args.model_id, "outputDir": "direct", "previewIntervalS": 3600, **case}
        request = parse_generate_request(params, limits=limits_for_pipeline(base_pipe),
                                         input_root=out_root, output_root=out_root)
        pipe = assemble_pipeline(base_pipe, request.mode, make_scheduler(request.scheduler, base_pipe.scheduler.config))

        def call() -> Any:
            return pipe(
                prompt=request.prompt,
                negative_prompt=request.negative_prompt or None,
                num_inference_steps=request.steps,
                guidance_scale=request.cfg_scale,
                num_images_per_prompt=1,
                generator=[torch.Generator(device="cpu").manual_seed(request.seed)],
                width=request.width,
                height=request.height,
                output_type="pil",
            ).images[0]

        counter = iter(range(10**9))

        def call_png() -> dict[str, Any]:
            image = call()
            return write_image(image, request, request.seed, 0, f"direct-{next(counter):04d}-{request.seed}.png")

        def call_generate() -> dict[str, Any]:
            return generate(base_pipe, request, device="cpu", generator_device="cpu")["images"][0]

        variants = {"pipe": call, "pipePng": call_png}
        if args.with_generate:
            variants["generate"] = call_generate
        case_result: dict[str, Any] = {"params": case}
        for name, fn in variants.items():
            for _ in range(args.warmup):
                last = fn()
            samples = []
            for _ in range(args.n):
                t = time.perf_counter()
                last = fn()
                samples.append(time.perf_counter() - t)
            case_result[name] = stats(samples)
            if isinstance(last, dict):
                case_result[f"{name}Sha256"] = last["sha256"]
            print(f"direct {case.get('width')}x{case.get('height')} {case.get('steps')} steps {name:9s} "
                  f"median {case_result[name]['medianS'] * 1000:.1f} ms p90 {case_result[name]['p90S'] * 1000:.1f} ms",
                  file=sys.stderr, flush=True)
        results.append(case_result)

    print(json.dumps({
        "python": sys.version.split()[0], "torch": torch.__version__, "diffusers": diffusers.__version__,
        "torchThreads": torch.get_num_threads(), "loadS": round(load_s, 3), "cases": results,
    }))


if __name__ == "__main__":
    main()
