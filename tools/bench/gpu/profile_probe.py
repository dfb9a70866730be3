"""Where one UNet call and one VAE decode spend their GPU time, on one CUDA GPU.

An SDXL-size UNet and VAE (random fp16 weights from the configs in
python-workers/src/dops_worker/configs/sdxl-base, channels_last, as the lane holds them) at the
CFG batch of ``--size``@``--batch``, eager and then compiled the way the lane compiles (fullgraph,
static shape, ``--inductor`` preset). Each part runs ``--calls`` times under ``torch.profiler``;
the GPU kernels are summed by name and by kind (matmul, convolution, attention, inductor's
Triton kernels, the rest), per call, with each kind's share of the kernel time, the wall time per
call and the gap between them (GPU idle). One JSON document to stdout and ``--out``.

    python3 tools/bench/gpu/profile_probe.py --batch 4 --out $OUT/profile.json
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict

from sdxl_parts import add_arguments, compile_as_lane, inputs, ms_per_call, setup, write_report

# Kernel name → kind; the first pattern that matches wins.
KINDS = (
    ("triton", re.compile(r"^triton", re.I)),  # first: inductor names fusions after their inputs ("…convolution…")
    ("attention", re.compile(r"flash|fmha|attention|sdpa|softmax", re.I)),
    ("convolution", re.compile(r"conv|fprop|dgrad|implicit|winograd|cudnn", re.I)),
    ("matmul", re.compile(r"gemm|nvjet|xmma|cutlass|matmul|sm90_|sm80_|ampere_|cublas", re.I)),
    ("groupnorm", re.compile(r"group_?norm|layer_?norm", re.I)),
    ("copy/layout", re.compile(r"copy|contiguous|transpose|permute|cat", re.I)),
)


def kind_of(name: str) -> str:
    return next((kind for kind, pattern in KINDS if pattern.search(name)), "other")


def profile(call, fn, calls: int, sync, cuda: bool) -> dict:
    """``calls`` calls of ``call(fn)`` under the profiler: wall ms per call and kernel time by kind and
    name (on CPU, for a smoke run: the ops' own CPU time)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    call(fn)
    sync()
    with torch_profile(activities=[ProfilerActivity.CUDA if cuda else ProfilerActivity.CPU]) as prof:
        wall = ms_per_call(call, fn, calls, sync)
    by_name: dict = defaultdict(lambda: [0.0, 0])
    for event in prof.events():
        if event.device_type.name != ("CUDA" if cuda else "CPU"):
            continue
        entry = by_name[event.name]
        entry[0] += (event.device_time_total if cuda else event.self_cpu_time_total) / 1000 / calls
        entry[1] += 1
    kernel_ms = sum(ms for ms, _ in by_name.values())
    by_kind: dict = defaultdict(float)
    for name, (ms, _) in by_name.items():
        by_kind[kind_of(name)] += ms
    top = sorted(by_name.items(), key=lambda item: -item[1][0])[:25]
    return {
        "wallMs": round(wall, 2),
        "kernelMs": round(kernel_ms, 2),
        "idleShare": round(max(0.0, 1 - kernel_ms / wall), 3) if wall else None,
        "kinds": {kind: {"ms": round(ms, 2), "share": round(ms / kernel_ms, 3)}
                  for kind, ms in sorted(by_kind.items(), key=lambda item: -item[1])},
        "top": [{"name": name[:160], "kind": kind_of(name), "ms": round(ms, 3), "launches": count // calls}
                for name, (ms, count) in top],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--mode", default="default")
    parser.add_argument("--parts", default="unet,decode")
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    probe = setup(args.device, args.configs)
    import torch

    device, dtype, sync, unet, vae = probe.device, probe.dtype, probe.sync, probe.unet, probe.vae
    batch_inputs = inputs(unet, vae, args.size, args.batch, device, dtype)
    parts = {"unet": (batch_inputs.unet_call, unet), "decode": (batch_inputs.decode_call, vae.decode)}
    report: dict = {"gpu": probe.gpu,
                    "torch": torch.__version__, "size": args.size, "batch": args.batch,
                    "unetRows": batch_inputs.sample.shape[0], "calls": args.calls,
                    "inductor": args.inductor, "mode": args.mode, "profiles": {}, "compileS": {}}
    with torch.no_grad():
        for part in args.parts.split(","):
            call, fn = parts[part]
            report["profiles"][f"eager {part}"] = profile(call, fn, args.calls, sync, probe.cuda)
            _save(report, args.out, f"eager {part}")
            if args.no_compile:
                continue
            compiled, report["compileS"][part] = compile_as_lane(fn, call, args.inductor, args.mode, sync)
            report["profiles"][f"compiled {part}"] = profile(call, compiled, args.calls, sync, probe.cuda)
            _save(report, args.out, f"compiled {part}")
    print(json.dumps(report, indent=1), flush=True)


def _save(report: dict, out: str, case: str) -> None:
    """After each profile: a line of progress, and the report so far to ``out`` (a run cut short keeps it)."""
    print(f"{case}: {report['profiles'][case]['wallMs']} ms per call", flush=True)
    write_report(report, out)


if __name__ == "__main__":
    main()
