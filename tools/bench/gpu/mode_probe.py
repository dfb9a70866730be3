"""Do CUDA graphs pay? The SDXL-size UNet compiled as the lane compiles it, once per
``--modes`` entry (torch.compile's ``default`` and ``reduce-overhead``, which replays CUDA graphs),
timed per call at each ``--batches`` entry's CFG batch, the modes interleaved round by round.

The UNet (random fp16 weights from the configs in python-workers/src/dops_worker/configs/sdxl-base,
channels_last) is one module; each mode is its own torch.compile of it, warmed up (and recorded)
per batch before the rounds. Reports per batch and mode the median ms per call, the ratio against
the first mode, the largest output difference against it, and the compile seconds. One JSON
document to stdout and ``--out``, rewritten after each step.

    python3 tools/bench/gpu/mode_probe.py --batches 1,4 --out $OUT/modes.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from sdxl_parts import add_arguments, inputs, setup


def main() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--modes", default="default,reduce-overhead")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=10, help="UNet calls per measurement")
    args = parser.parse_args()
    probe = setup(args)
    import torch
    import torch._inductor.config as inductor_config

    from dops_worker.inference.compiled import inductor_options

    device, dtype, sync, unet, vae = probe.device, probe.dtype, probe.sync, probe.unet, probe.vae
    modes = args.modes.split(",")
    report: dict = {"gpu": probe.gpu,
                    "torch": torch.__version__, "size": args.size, "modes": modes, "rounds": args.rounds,
                    "repeats": args.repeats, "inductor": args.inductor, "compileS": {}, "batches": {}}

    def save() -> None:
        if args.out:
            Path(args.out).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")

    compiled = {mode: torch.compile(unet, mode=mode, fullgraph=True, dynamic=False) for mode in modes}
    with torch.no_grad():
        for batch in (int(b) for b in args.batches.split(",")):
            call = inputs(unet, vae, args.size, batch, device, dtype).unet_call
            outputs = {}
            for mode in modes:
                with inductor_config.patch(inductor_options(args.inductor)):
                    started = time.perf_counter()
                    for _ in range(3):  # compile; CUDA graphs: warm-up run, then recording
                        call(compiled[mode])
                    sync()
                report["compileS"][f"{mode}@{batch}"] = round(time.perf_counter() - started, 1)
                outputs[mode] = call(compiled[mode]).float().clone()
                save()
            ms: dict = {mode: [] for mode in modes}
            for index in range(args.rounds):
                for mode in (modes if index % 2 == 0 else modes[::-1]):
                    sync()
                    started = time.perf_counter()
                    for _ in range(args.repeats):
                        call(compiled[mode])
                    sync()
                    ms[mode].append((time.perf_counter() - started) / args.repeats * 1000)
                    print(f"batch {batch} round {index} {mode}: {ms[mode][-1]:.2f} ms", flush=True)
            base = statistics.median(ms[modes[0]])
            report["batches"][str(batch)] = {
                "unetRows": 2 * batch,
                "ms": {mode: {"median": round(statistics.median(v), 2), "all": [round(x, 2) for x in v]}
                       for mode, v in ms.items()},
                "ratioOverFirstMode": {mode: round(base / statistics.median(v), 3) for mode, v in ms.items()},
                "maxAbsDiffVsFirstMode": {mode: float((outputs[mode] - outputs[modes[0]]).abs().max())
                                          for mode in modes},
            }
            save()
    print(json.dumps(report, indent=1), flush=True)


if __name__ == "__main__":
    main()
