"""Runtime knobs of the compiled lane, A/B on one CUDA GPU, interleaved round by round.

An SDXL-size UNet (random fp16 weights from the configs in
python-workers/src/dops_worker/configs/sdxl-base, channels_last) twice — as it is and with
diffusers' fused QKV projections (``fuse_qkv_projections``, the same weights) — and its VAE, at
the CFG batch of ``--size``@``--batch``. Each round measures, in turn, ms per UNet call and per VAE
decode with ``torch.backends.cudnn.benchmark`` off and on (cuDNN's own algorithm search instead of
its heuristics; the compiled graphs call aten's cuDNN convolutions), eager and then compiled the
way the lane compiles (fullgraph, static shape, ``--inductor`` preset), and the eager UNet with
SDPA on cuDNN's attention instead of the default backend. Reports medians over the rounds, ratios
against the lane as it is (unfused, benchmark off), the largest output differences, and the
graphs dynamo compiled (a toggle that recompiled would show here). One JSON document to stdout
and ``--out``.

    python3 tools/bench/gpu/knob_probe.py --batch 4 --out $OUT/knobs.json
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json

from sdxl_parts import add_arguments, compile_as_lane, in_turn, inputs, ms_per_call, ms_summary, setup, write_report


def main() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5, help="UNet calls per measurement (decodes: half)")
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    probe = setup(args.device, args.configs)
    import torch
    from torch._dynamo.utils import counters
    from torch.nn.attention import SDPBackend, sdpa_kernel

    device, dtype, sync, unet, vae = probe.device, probe.dtype, probe.sync, probe.unet, probe.vae
    fused = copy.deepcopy(unet)
    fused.fuse_qkv_projections()
    fused.to(memory_format=torch.channels_last)
    batch_inputs = inputs(unet, vae, args.size, args.batch, device, dtype)
    rows = batch_inputs.sample.shape[0]
    unet_call, decode_call = batch_inputs.unet_call, batch_inputs.decode_call

    def timed(call, fn, repeats, benchmark, backend=None):
        torch.backends.cudnn.benchmark = benchmark
        context = sdpa_kernel([backend]) if backend is not None else contextlib.nullcontext()
        with context:
            call(fn)  # cuDNN's search (benchmark on) or a first call after the toggle: not timed
            return ms_per_call(call, fn, repeats, sync)

    report: dict = {"gpu": probe.gpu, "torch": torch.__version__,
                    "cudnn": torch.backends.cudnn.version(), "size": args.size, "batch": args.batch,
                    "unetRows": rows, "rounds": args.rounds, "inductor": args.inductor}
    cases: dict = {}
    decode_repeats = max(1, args.repeats // 2)
    with torch.no_grad():
        eager = [
            ("eager unet", lambda b: timed(unet_call, unet, args.repeats, b)),
            ("eager unet-fusedQKV", lambda b: timed(unet_call, fused, args.repeats, b)),
            ("eager decode", lambda b: timed(decode_call, vae.decode, decode_repeats, b)),
        ]
        if probe.cuda:
            eager.append(("eager unet-cudnnSDPA", lambda b: timed(unet_call, unet, args.repeats, b,
                                                                  SDPBackend.CUDNN_ATTENTION)))
        _rounds(eager, args.rounds, cases)
        if not args.no_compile:
            graphs_before = int(counters["stats"]["unique_graphs"])
            compiled, compile_s = {}, {}
            for name, module, call in (("unet", unet, unet_call), ("unet-fusedQKV", fused, unet_call),
                                       ("decode", vae.decode, decode_call)):
                torch.backends.cudnn.benchmark = False
                compiled[name], compile_s[name] = compile_as_lane(module, call, args.inductor, "default", sync)
            report["compileS"] = compile_s
            report["graphsAfterCompiles"] = int(counters["stats"]["unique_graphs"]) - graphs_before
            compiled_cases = [
                ("compiled unet", lambda b: timed(unet_call, compiled["unet"], args.repeats, b)),
                ("compiled unet-fusedQKV", lambda b: timed(unet_call, compiled["unet-fusedQKV"], args.repeats, b)),
                ("compiled decode", lambda b: timed(decode_call, compiled["decode"], decode_repeats, b)),
            ]
            _rounds(compiled_cases, args.rounds, cases)
            report["graphsWhileToggling"] = (int(counters["stats"]["unique_graphs"]) - graphs_before
                                            - report["graphsAfterCompiles"])
            torch.backends.cudnn.benchmark = False
            reference = unet_call(compiled["unet"]).float()
            report["maxAbsDiff"] = {
                "compiled fusedQKV vs compiled":
                    float((unet_call(compiled["unet-fusedQKV"]).float() - reference).abs().max()),
                "compiled vs eager": float((unet_call(unet).float() - reference).abs().max()),
                "unetRefMaxAbs": float(reference.abs().max()),
            }
    report["ms"] = ms_summary(cases)
    report["ratios"] = _ratios(report["ms"])
    print(json.dumps(report, indent=1), flush=True)
    write_report(report, args.out)


def _rounds(measures, rounds, cases) -> None:
    """``rounds`` rounds; in each, every measure with cudnn.benchmark off then on (order alternating)."""
    for index in range(rounds):
        for name, measure in measures:
            for benchmark in in_turn((False, True), index):
                key = f"{name} benchmark={'on' if benchmark else 'off'}"
                cases.setdefault(key, []).append(measure(benchmark))
                print(f"round {index} {key}: {cases[key][-1]:.1f} ms", flush=True)


def _ratios(ms: dict) -> dict:
    """Each case's speed ÷ the same part as the lane runs it now (benchmark off, unfused)."""
    out = {}
    for key, value in ms.items():
        kind, part = key.split(" ")[:2]
        base = ms.get(f"{kind} {part.split('-')[0]} benchmark=off")
        if base:
            out[key] = round(base["median"] / value["median"], 3)
    return out


if __name__ == "__main__":
    main()
