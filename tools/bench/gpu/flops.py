"""The floating-point work of one SDXL image, counted (no GPU needed), and what a measured time per
image means against a card's peak.

Builds the SDXL UNet and VAE from python-workers/src/dops_worker/configs/sdxl-base on the meta
device (no weights, no memory) and counts one UNet call at the CFG batch and one VAE decode with
``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions, attention). Per image:
``steps × 2 (CFG) × UNet-per-row + decode``. With ``--seconds-per-image S`` (a measured figure) it
adds the sustained TFLOP/s and, with ``--peak-tflops P`` (the card's dense fp16 tensor peak, e.g.
989 for an H100 or H200 SXM), the share of that peak, and the time per image at 100 % of it.

    python3 tools/bench/gpu/flops.py --seconds-per-image 1.0129 --peak-tflops 989 \
        --out tools/bench/results/sdxl-flops-h100.json
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from sdxl_parts import build, inputs, write_report


def count(size: int, batch: int) -> dict[str, Any]:
    """FLOPs of one UNet call (``2 × batch`` rows, the CFG batch) and one decode of ``batch`` latents."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    unet, vae = build("meta", torch.float16)
    batch_inputs = inputs(unet, vae, size, batch, "meta", torch.float16)
    out: dict[str, Any] = {}
    with torch.no_grad():
        counter = FlopCounterMode(display=False)
        with counter:
            batch_inputs.unet_call(unet)
        out["unetCall"] = counter.get_total_flops()
        out["unetByOp"] = {str(op): flops for op, flops in counter.get_flop_counts()["Global"].items()}
        counter = FlopCounterMode(display=False)
        with counter:
            batch_inputs.decode_call(vae.decode)
        out["decode"] = counter.get_total_flops()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=4, help="images per call (the UNet sees twice as many rows)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--seconds-per-image", type=float, default=None)
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    counted = count(args.size, args.batch)
    per_row = counted["unetCall"] / (2 * args.batch)
    per_image = args.steps * 2 * per_row + counted["decode"] / args.batch
    report: dict = {"size": args.size, "batch": args.batch, "steps": args.steps, "cfg": True,
                    "unetTflopsPerRow": round(per_row / 1e12, 3),
                    "unetTflopsByOpPerCall": {op: round(flops / 1e12, 3) for op, flops in counted["unetByOp"].items()},
                    "decodeTflopsPerImage": round(counted["decode"] / args.batch / 1e12, 3),
                    "tflopsPerImage": round(per_image / 1e12, 1)}
    if args.seconds_per_image:
        report["secondsPerImage"] = args.seconds_per_image
        report["sustainedTflops"] = round(per_image / args.seconds_per_image / 1e12, 1)
    if args.peak_tflops:
        report["peakTflops"] = args.peak_tflops
        report["secondsPerImageAtPeak"] = round(per_image / (args.peak_tflops * 1e12), 3)
        if args.seconds_per_image:
            report["shareOfPeak"] = round(report["sustainedTflops"] / args.peak_tflops, 3)
    print(json.dumps(report, indent=1))
    write_report(report, args.out)


if __name__ == "__main__":
    main()
