"""Compile-time and speed probe of the compiled lane's inductor settings, on one CUDA GPU.

An SDXL-size UNet and VAE (random fp16 weights from the configs in
python-workers/src/dops_worker/configs/sdxl-base) are put in channels_last and compiled the way
dops_worker.inference.compiled does (fullgraph, static shapes), each ``--variant`` in its own
process with its own inductor cache directory, so every compile is cold unless ``--warm`` reruns
a variant on the cache it left. Per variant: UNet first-call seconds (compile), UNet ms per call
at the CFG batch of ``--size``@``--batch``, VAE decode first-call seconds and ms per decode, and
the same eager numbers. One JSON line per variant, to stdout and ``--out``.

    python3 tools/bench/gpu/compile_probe.py --variants none,conv1x1,diffusers --out $OUT/probe.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from sdxl_parts import compile_as_lane, inputs, ms_per_call, setup


def _child(args: argparse.Namespace) -> dict:
    probe = setup("cuda")
    import torch

    from dops_worker.inference.compiled import inductor_options

    unet, vae, sync = probe.unet, probe.vae, probe.sync
    batch_inputs = inputs(unet, vae, args.size, args.batch, "cuda", torch.float16)
    unet_call, decode_call = batch_inputs.unet_call, batch_inputs.decode_call

    result: dict = {"variant": args.variant, "mode": args.mode, "warm": args.warm, "gpu": probe.gpu}
    with torch.no_grad():
        unet_call(unet)
        decode_call(vae.decode)
        result["eagerUnetMs"] = round(ms_per_call(unet_call, unet, args.repeats, sync), 2)
        result["eagerDecodeMs"] = round(ms_per_call(decode_call, vae.decode, 3, sync), 2)
        result["options"] = inductor_options(args.variant)
        compiled_unet, result["unetCompileS"] = compile_as_lane(unet, unet_call, args.variant, args.mode, sync)
        compiled_decode, result["decodeCompileS"] = compile_as_lane(vae.decode, decode_call, args.variant,
                                                                    args.mode, sync)
        unet_call(compiled_unet)
        result["unetMs"] = round(ms_per_call(unet_call, compiled_unet, args.repeats, sync), 2)
        decode_call(compiled_decode)
        result["decodeMs"] = round(ms_per_call(decode_call, compiled_decode, 3, sync), 2)
        eager_out = unet_call(unet).float()
        compiled_out = unet_call(compiled_unet).float()
        result["unetMaxAbsDiff"] = float((eager_out - compiled_out).abs().max())
        result["unetRefMaxAbs"] = float(eager_out.abs().max())
        eager_img = decode_call(vae.decode).float()
        compiled_img = decode_call(compiled_decode).float()
        result["decodeMaxAbsDiff"] = float((eager_img - compiled_img).abs().max())
    from torch._dynamo.utils import counters

    result["graphs"] = int(counters["stats"]["unique_graphs"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variants", default="none,conv1x1,diffusers")
    parser.add_argument("--variant", default="")
    parser.add_argument("--mode", default="default")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warm", action="store_true", help="run each variant twice on one cache (cold, then warm)")
    parser.add_argument("--cache-root", default=tempfile.mkdtemp(prefix="dops-probe-"))
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    if args.variant:  # the child
        print("RESULT " + json.dumps(_child(args)), flush=True)
        return
    for variant in args.variants.split(","):
        cache = os.path.join(args.cache_root, f"{variant}-{args.mode}")
        for warm in ([False, True] if args.warm else [False]):
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
            command = [sys.executable, __file__, "--variant", variant, "--mode", args.mode, "--size", str(args.size),
                       "--batch", str(args.batch), "--repeats", str(args.repeats)] + (["--warm"] if warm else [])
            started = time.perf_counter()
            done = subprocess.run(command, check=False, env=env, capture_output=True, text=True)
            line = next((row[7:] for row in done.stdout.splitlines() if row.startswith("RESULT ")), None)
            result = json.loads(line) if line else {"variant": variant, "warm": warm, "error": done.stderr[-3000:]}
            result["processS"] = round(time.perf_counter() - started, 1)
            print(json.dumps(result), flush=True)
            if args.out:
                with open(args.out, "a", encoding="utf-8") as out:
                    out.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
