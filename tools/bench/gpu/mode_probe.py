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
import sys
import time
from pathlib import Path

from sdxl_parts import CONFIGS, ROOT, build, inputs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--modes", default="default,reduce-overhead")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=10, help="UNet calls per measurement")
    parser.add_argument("--inductor", default="conv1x1")
    parser.add_argument("--configs", default=str(CONFIGS), help="a folder with unet/ and vae/ configs")
    parser.add_argument("--device", default="cuda", help="cpu (float32) only to try the script on a tiny config")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "python-workers/src"))
    import torch
    import torch._inductor.config as inductor_config

    from dops_worker.inference.compiled import inductor_options

    device, dtype = args.device, torch.float16 if args.device.startswith("cuda") else torch.float32
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    torch.manual_seed(0)
    unet, vae = build(device, dtype, Path(args.configs))
    unet.to(memory_format=torch.channels_last)
    modes = args.modes.split(",")
    report: dict = {"gpu": torch.cuda.get_device_name() if device.startswith("cuda") else device,
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
