"""Do CUDA graphs pay? The SDXL-size UNet compiled as the lane compiles it, once per
``--modes`` entry (torch.compile's ``default`` and ``reduce-overhead``, which replays CUDA graphs),
timed per call at each ``--batches`` entry's CFG batch, the modes interleaved round by round.

The UNet (random fp16 weights from the configs in python-workers/src/dops_worker/configs/sdxl-base,
channels_last) is one module; each mode and batch is its own torch.compile of it, warmed up (and
recorded) as the lane warms up before the rounds. Reports per batch and mode the median ms per call, the ratio against
the first mode, the largest output difference against it, and the compile seconds. One JSON
document to stdout and ``--out``, rewritten after each step.

    python3 tools/bench/gpu/mode_probe.py --batches 1,4 --out $OUT/modes.json
"""

from __future__ import annotations

import argparse
import json

from sdxl_parts import (add_arguments, compile_as_lane, in_turn, inputs, ms_per_call, ms_summary, setup,
                        speed_over, write_report)


def main() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--modes", default="default,reduce-overhead")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=10, help="UNet calls per measurement")
    args = parser.parse_args()
    probe = setup(args.device, args.configs)
    import torch

    device, dtype, sync, unet, vae = probe.device, probe.dtype, probe.sync, probe.unet, probe.vae
    modes = args.modes.split(",")
    report: dict = {"gpu": probe.gpu,
                    "torch": torch.__version__, "size": args.size, "modes": modes, "rounds": args.rounds,
                    "repeats": args.repeats, "inductor": args.inductor, "compileS": {}, "batches": {}}

    compiled: dict = {}
    with torch.no_grad():
        for batch in (int(b) for b in args.batches.split(",")):
            call = inputs(unet, vae, args.size, batch, device, dtype).unet_call
            outputs = {}
            for mode in modes:
                compiled[mode], report["compileS"][f"{mode}@{batch}"] = compile_as_lane(
                    unet, call, args.inductor, mode, sync)
                outputs[mode] = call(compiled[mode]).float().clone()  # a CUDA graph's output is overwritten
                write_report(report, args.out)
            ms: dict = {mode: [] for mode in modes}
            for index in range(args.rounds):
                for mode in in_turn(modes, index):
                    ms[mode].append(ms_per_call(call, compiled[mode], args.repeats, sync))
                    print(f"batch {batch} round {index} {mode}: {ms[mode][-1]:.2f} ms", flush=True)
            report["batches"][str(batch)] = {
                "unetRows": 2 * batch,
                "ms": ms_summary(ms),
                "ratioOverFirstMode": speed_over(ms, modes[0]),
                "maxAbsDiffVsFirstMode": {mode: float((outputs[mode] - outputs[modes[0]]).abs().max())
                                          for mode in modes},
            }
            write_report(report, args.out)
    print(json.dumps(report, indent=1), flush=True)


if __name__ == "__main__":
    main()
