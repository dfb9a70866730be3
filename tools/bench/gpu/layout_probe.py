"""Which memory layout suits the eager VAE decode? The SDXL-size VAE (random fp16 weights, seed 0)
decodes ``--batch`` latents at ``--size``² eagerly, its weights in channels_last (as the compiled
lane holds them, so its eager fallback decodes that way) and contiguous (as an uncompiled worker
holds them), the layouts interleaved round by round. Reports the median ms per decode per layout,
the ratio against channels_last and the largest output difference between the layouts. One JSON
document to stdout and ``--out``.

    python3 tools/bench/gpu/layout_probe.py --batch 4 --out $OUT/layout.json
"""

from __future__ import annotations

import argparse
import json

from sdxl_parts import add_arguments, in_turn, inputs, ms_per_call, ms_summary, setup, speed_over, write_report

LAYOUTS = ("channels_last", "contiguous")


def main() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="decodes per measurement")
    args = parser.parse_args()
    probe = setup(args.device, args.configs)
    import torch

    vae = probe.vae
    formats = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}
    call = inputs(probe.unet, vae, args.size, args.batch, probe.device, probe.dtype).decode_call
    ms: dict[str, list[float]] = {layout: [] for layout in LAYOUTS}
    outputs: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for index in range(args.rounds):
            for layout in in_turn(LAYOUTS, index):
                vae.to(memory_format=formats[layout])
                if layout not in outputs:
                    outputs[layout] = call(vae.decode).float().cpu()  # also the warm-up
                ms[layout].append(ms_per_call(call, vae.decode, args.repeats, probe.sync))
                print(f"round {index} {layout}: {ms[layout][-1]:.1f} ms", flush=True)
    report = {"gpu": probe.gpu, "torch": torch.__version__, "size": args.size, "batch": args.batch,
              "rounds": args.rounds, "repeats": args.repeats,
              "msPerDecode": ms_summary(ms), "ratioOverChannelsLast": speed_over(ms, LAYOUTS[0]),
              "maxAbsDifference": float((outputs[LAYOUTS[0]] - outputs[LAYOUTS[1]]).abs().max())}
    write_report(report, args.out)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
