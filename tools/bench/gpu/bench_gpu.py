#!/usr/bin/env python3
"""GPU benchmark of the whole stack against bare diffusers, interleaved round by round.

- **bare**: this process. The checkpoint built with the project's loader (diffusers'
  ``from_single_file`` per component, ``build_pipeline``) and moved to the device — a plain
  diffusers load, no RAM tier, no pinning — then ``pipe(...)`` with the worker's arguments
  (``output_type="pil"``: diffusers' own decode, fp32 VAE upcast included) and the worker's PNG
  writer (``write_image``: the same metadata, temp file + fsync + rename, sha256).
- **stack**: ``stack.ts`` (bundled with esbuild by package.sh) in Node: unary gRPC
  ``InferenceService.Generate`` → Generator → device lane → Python worker (``inference.generate``)
  → PNG, timed at the gRPC client; the model loaded with the ``LoadModel`` RPC.

Phases (all in one run, one machine):
  loads     the stack's LoadModel RPC vs the bare load of the same file (page cache warm for
            both), interleaved; RAM-tier switch through the stack (UnloadModel VRAM + LoadModel).
  paired    batch 1: ``--rounds`` rounds, each one bare image and one stack image, the order
            alternating; ratio per round = bare_s / stack_s (stack speed ÷ bare speed).
  batch     bare batch ``--bare-batch`` (one pipe call for N images + N PNGs): images/s.
  load      ``--clients`` concurrent gRPC clients through a second stack whose lane batches up to
            ``--max-batch`` (DOPS_INFERENCE_MAX_BATCH): images/s and client wall time per request,
            against bare batch-1 images/s measured just before and after.

The checkpoint: ``--checkpoint`` (with ``--config-dir`` for tiny fixtures), else an SDXL-size
random fp16 file in the real single-file key layout (tools/fixtures/ldm_layout.py, via
tools/bench/model_switch), written to ``--workdir``.

  CPU smoke test (here): PYTHONPATH=python-workers/src .venv/bin/python tools/bench/gpu/bench_gpu.py --device cpu \
      --checkpoint tools/fixtures/generated/sdxl-tiny.safetensors --config-dir tools/fixtures/generated/configs \
      --size-px 64 --steps 3 --rounds 2 --requests 4 --node node --bundle .gpu-bench/js/dist/stack.cjs
  GPU: see README.md (package.sh, then run.sh through the device tool).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "python-workers" / "src"))
sys.path.insert(0, str(REPO / "tools" / "bench" / "model_switch"))
sys.path.insert(0, str(REPO / "tools" / "fixtures"))

import torch  # noqa: E402

PROMPT = "a lighthouse on a cliff at dawn, dramatic clouds, golden light"
NEGATIVE = "blurry, low quality"


def log(msg: str) -> None:
    print(f"[bench_gpu {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"n": len(ordered), "median": round(median(ordered), 4),
            "p90": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 4),
            "min": round(ordered[0], 4), "max": round(ordered[-1], 4)} if ordered else {"n": 0}


class CpuMeter:
    """CPU seconds per thread of a process tree (the stack's Node process and its Python worker),
    read from /proc through psutil before and after a request: where a request's CPU time goes
    (the launch thread, the reader/writer threads, Node) when batch 1 is CPU-bound."""

    def __init__(self, pid: int) -> None:
        import psutil

        self._root = psutil.Process(pid)

    def _processes(self) -> list[Any]:
        import psutil

        try:
            return [self._root, *self._root.children(recursive=True)]
        except psutil.Error:
            return [self._root]

    def snapshot(self) -> dict[tuple[int, int], float]:
        import psutil

        times: dict[tuple[int, int], float] = {}
        for proc in self._processes():
            try:
                for thread in proc.threads():
                    times[(proc.pid, thread.id)] = thread.user_time + thread.system_time
            except psutil.Error:
                continue
        return times

    def names(self) -> dict[tuple[int, int], str]:
        found: dict[tuple[int, int], str] = {}
        for proc in self._processes():
            for key in list(self.snapshot()):
                if key[0] != proc.pid:
                    continue
                try:
                    comm = Path(f"/proc/{key[0]}/task/{key[1]}/comm").read_text().strip()
                except OSError:
                    comm = "?"
                found[key] = f"{'node' if proc.pid == self._root.pid else 'worker'}:{comm}:{key[1]}"
        return found

    @staticmethod
    def delta(before: dict[tuple[int, int], float], after: dict[tuple[int, int], float]) -> dict[tuple[int, int], float]:
        return {key: after[key] - before.get(key, 0.0) for key in after if after[key] - before.get(key, 0.0) > 0.0005}


def cpu_summary(meter: CpuMeter, deltas: list[dict[tuple[int, int], float]]) -> dict[str, Any]:
    """Median CPU seconds per request of each thread (the busiest first) and of the whole tree."""
    names = meter.names()
    keys = {key for d in deltas for key in d}
    per_thread = {names.get(key, f"{key[0]}:{key[1]}"): round(median([d.get(key, 0.0) for d in deltas]), 4)
                  for key in keys}
    busiest = dict(sorted(per_thread.items(), key=lambda item: -item[1])[:8])
    return {"perThreadMedianS": busiest, "totalMedianS": round(median([sum(d.values()) for d in deltas]), 4),
            "nodeMedianS": round(median([sum(v for k, v in d.items() if k[0] == meter._root.pid) for d in deltas]), 4)}


# --------------------------------------------------------------------------------------------- #
# The stack: stack.cjs in Node, NDJSON over its stdin/stdout
# --------------------------------------------------------------------------------------------- #


class Stack:
    def __init__(self, node: str, bundle: str, env: dict[str, str], log_path: Path) -> None:
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen([node, bundle], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._log, env=env, cwd=str(REPO))
        self.hello = self._read()
        if not self.hello.get("ready"):
            raise RuntimeError(f"stack did not start: {self.hello}")

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"stack exited (code {self.proc.poll()}); see its log")
        return json.loads(line)

    def ask(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        self.proc.stdin.flush()
        reply = self._read()
        if not reply.get("ok"):
            raise RuntimeError(f"stack {command['cmd']} failed: {reply.get('error')}")
        return reply

    def close(self) -> None:
        try:
            self.ask({"cmd": "quit"})
        except Exception:  # noqa: BLE001
            pass
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


# --------------------------------------------------------------------------------------------- #
# Bare: diffusers in this process + the worker's PNG writer
# --------------------------------------------------------------------------------------------- #


class Bare:
    def __init__(self, checkpoint: Path, config_dir: str | None, device: torch.device, dtype: torch.dtype,
                 out_dir: Path) -> None:
        from dops_worker.backends.capabilities import generator_device

        self.checkpoint, self.config_dir, self.device, self.dtype = checkpoint, config_dir, device, dtype
        self.out_dir = out_dir
        # The worker's choice (a CUDA generator on CUDA): with the same seed both sides start from
        # the same noise, so their pixels can be compared (a CPU generator here drew other noise).
        self.generator_device = generator_device(device)
        self.pipe: Any = None
        self.counter = 0

    def load(self) -> float:
        """A plain load: read + build with diffusers (the project's loader) + .to(device). Seconds."""
        from dops_worker.models.loader import build_pipeline

        self.pipe = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        started = time.perf_counter()
        built = build_pipeline(self.checkpoint, config_dir=self.config_dir, torch_dtype=self.dtype)
        pipe = built.pipeline.to(self.device)
        sync(self.device)
        elapsed = time.perf_counter() - started
        from dops_worker.inference.schedulers import make_scheduler

        pipe.scheduler = make_scheduler("Euler", pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe
        return elapsed

    def _request(self, params: dict[str, Any]) -> Any:
        from dops_worker.inference.pipelines import limits_for_pipeline
        from dops_worker.inference.request import parse_generate_request
        from dops_worker.protocol.files import Roots

        roots = Roots("bench", (self.out_dir,))
        worker_params = {"model": "bench", "outputDir": "bare", "previewIntervalS": 3600, **params}
        return parse_generate_request(worker_params, limits=limits_for_pipeline(self.pipe), input_roots=roots,
                                      artifact_roots=roots, model_roots=roots)

    def generate(self, params: dict[str, Any], batch: int = 1) -> dict[str, Any]:
        """One pipe call for ``batch`` images (seeds seed..seed+batch-1), then their PNGs. Seconds."""
        from dops_worker.inference.artifacts import write_image

        request = self._request(params)
        cpu_started, proc_started = time.thread_time(), time.process_time()
        started = time.perf_counter()
        images = self.pipe(
            prompt=[request.prompt] * batch,
            negative_prompt=[request.negative_prompt] * batch,
            num_inference_steps=request.steps,
            guidance_scale=request.cfg_scale,
            generator=[torch.Generator(device=self.generator_device).manual_seed(request.seed + i)
                       for i in range(batch)],
            width=request.width,
            height=request.height,
            output_type="pil",
        ).images
        denoised = time.perf_counter()
        launch_cpu = time.thread_time() - cpu_started
        written = []
        for i, image in enumerate(images):
            self.counter += 1
            written.append(write_image(image, request, request.seed + i, i, f"bare-{self.counter:05d}.png"))
        finished = time.perf_counter()
        return {"wallS": finished - started, "generateS": denoised - started, "writeS": finished - denoised,
                "paths": [w["path"] for w in written],
                "launchThreadCpuS": launch_cpu, "processCpuS": time.process_time() - proc_started}


    def worker_generate(self, params: dict[str, Any]) -> dict[str, Any]:
        """The worker's own ``inference.generate`` function on this process's pipeline (no runtime,
        no Node): what the worker's code costs apart from the process it runs in. Seconds."""
        from dops_worker.inference.generate import generate

        request = self._request(params)
        cpu_started = time.thread_time()
        started = time.perf_counter()
        result = generate(self.pipe, request, device=self.device, generator_device=self.generator_device)
        finished = time.perf_counter()
        timings = result["timings"]
        return {"wallS": finished - started, "generateS": timings["generateS"], "writeS": timings["writeS"],
                "paths": [image["path"] for image in result["images"]],
                "launchThreadCpuS": time.thread_time() - cpu_started}


def pixel_difference(a: str, b: str) -> dict[str, float]:
    """How far two PNGs' decoded RGB pixels are apart (0–255 scale): the largest and the mean
    absolute difference, and the share of pixels that differ by more than 8 levels in any channel."""
    import numpy as np
    from PIL import Image

    with Image.open(a) as left, Image.open(b) as right:
        x = np.asarray(left.convert("RGB"), dtype=np.int16)
        y = np.asarray(right.convert("RGB"), dtype=np.int16)
    diff = np.abs(x - y)
    return {"maxAbs": int(diff.max()), "meanAbs": round(float(diff.mean()), 4),
            "shareOver8": round(float((diff.max(axis=-1) > 8).mean()), 6)}


# --------------------------------------------------------------------------------------------- #
# Phases
# --------------------------------------------------------------------------------------------- #


def gen_params(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    return {"prompt": PROMPT, "negativePrompt": NEGATIVE, "width": args.size_px, "height": args.size_px,
            "steps": args.steps, "cfgScale": args.cfg, "seed": seed, "batchCount": 1, "scheduler": "Euler"}


def stack_params(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    return {"modelId": "bench", **gen_params(args, seed)}


def phase_loads(args, stack: Stack, bare: Bare, load_cmd: dict[str, Any]) -> dict[str, Any]:
    # Not counted: the first load on each side also imports diffusers and friends in its process.
    first = {"stack": stack.ask(load_cmd)["loadS"], "bare": bare.load()}
    log(f"first loads (imports included): {first}")
    stack_s: list[float] = []
    bare_s: list[float] = []
    for i in range(args.loads):
        stack.ask({"cmd": "unload", "modelId": "bench", "tier": "ram"})  # drops RAM and VRAM
        for side in (("stack", "bare") if i % 2 == 0 else ("bare", "stack")):
            if side == "stack":
                reply = stack.ask(load_cmd)
                stack_s.append(reply["loadS"])
                log(f"load stack {reply['loadS']:.2f} s ({json.dumps(reply.get('response', {}).get('timings', {}))})")
            else:
                bare_s.append(bare.load())
                log(f"load bare {bare_s[-1]:.2f} s")
    ram: list[float] = []
    unloads: list[float] = []
    for _ in range(args.ram_switches):
        unloads.append(stack.ask({"cmd": "unload", "modelId": "bench", "tier": "vram"})["unloadS"])
        reply = stack.ask(load_cmd)
        ram.append(reply["loadS"])
        source = reply.get("response", {}).get("source")
    log(f"RAM-tier switch (LoadModel after UnloadModel VRAM) median {median(ram):.3f} s, source {source if ram else '-'}")
    ratios = [s / b for s, b in zip(stack_s, bare_s)]
    return {"stackLoadS": summary(stack_s), "bareLoadS": summary(bare_s),
            "stackOverBare": round(median(ratios), 3) if ratios else None, "firstLoadsS": first,
            "ramTierSwitch": {"loadModelS": summary(ram), "unloadModelS": summary(unloads),
                              "switchS": summary([a + b for a, b in zip(ram, unloads)])}}


def phase_paired(args, stack: Stack, bare: Bare, seed0: int, baseline: Stack | None = None) -> dict[str, Any]:
    """Bare and stack (and the baseline stack, when given) one image each per round, in an order
    that rotates from round to round."""
    sides = ["bare", "stack"] + (["baseline"] if baseline is not None else []) + (["inproc"] if args.inproc else [])
    meter = CpuMeter(stack.proc.pid)
    stack_cpu: list[dict[tuple[int, int], float]] = []

    def run(side: str, seed: int) -> dict[str, Any]:
        if side == "bare":
            return bare.generate(gen_params(args, seed))
        if side == "inproc":
            return bare.worker_generate(gen_params(args, seed))
        target = stack if side == "stack" else baseline
        assert target is not None
        before = meter.snapshot() if side == "stack" else {}
        reply = target.ask({"cmd": "gen", "params": stack_params(args, seed)})
        if side == "stack":
            stack_cpu.append(CpuMeter.delta(before, meter.snapshot()))
        return reply

    for i in range(args.warmup):
        for side in sides:
            run(side, seed0 + i)
    rounds = []
    for r in range(args.rounds):
        seed = seed0 + 1000 + r
        order = sides[r % len(sides):] + sides[: r % len(sides)]
        if (r // len(sides)) % 2 == 1:
            order.reverse()
        row: dict[str, Any] = {"round": r, "order": order}
        for side in order:
            row[side] = run(side, seed)
        row["ratio"] = row["bare"]["wallS"] / row["stack"]["wallS"]
        if baseline is not None:
            row["ratioBaseline"] = row["bare"]["wallS"] / row["baseline"]["wallS"]
        if "inproc" in row:
            row["ratioInproc"] = row["bare"]["wallS"] / row["inproc"]["wallS"]
        # Decoded once, after the round is timed. The files differ in their metadata (request ids,
        # timings): equal decoded pixels is what "the same image" means. bare decodes SDXL in fp32
        # (diffusers' upcast), the worker in fp16 where the VAE allows it.
        row["pixels"] = pixel_difference(row["bare"]["paths"][0], row["stack"]["paths"][0])
        row["sameImage"] = row["pixels"]["maxAbs"] == 0
        rounds.append(row)
        log(f"round {r}: bare {row['bare']['wallS']:.3f} s, stack {row['stack']['wallS']:.3f} s "
            f"(worker generate {row['stack']['generateS']:.3f} + write {row['stack']['writeS']:.3f}), "
            f"ratio {row['ratio']:.3f}"
            + (f"; baseline {row['baseline']['wallS']:.3f} s (generate {row['baseline']['generateS']:.3f} + write "
               f"{row['baseline']['writeS']:.3f}), ratio {row['ratioBaseline']:.3f}" if baseline is not None else "")
            + (f"; in-process worker generate {row['inproc']['wallS']:.3f} s, ratio {row['ratioInproc']:.3f}"
               if "inproc" in row else ""))
    ratios = [r["ratio"] for r in rounds]
    extra: dict[str, Any] = {"stackCpuPerRequest": cpu_summary(meter, stack_cpu),
                             "bareLaunchThreadCpuS": summary([r["bare"]["launchThreadCpuS"] for r in rounds]),
                             "bareProcessCpuS": summary([r["bare"]["processCpuS"] for r in rounds])}
    if args.inproc:
        inproc_ratios = [r["ratioInproc"] for r in rounds]
        extra.update(ratioInprocSpeedOverBare={"median": round(median(inproc_ratios), 4),
                                               "min": round(min(inproc_ratios), 4), "max": round(max(inproc_ratios), 4)},
                     inprocS=summary([r["inproc"]["wallS"] for r in rounds]),
                     inprocGenerateS=summary([r["inproc"]["generateS"] for r in rounds]),
                     inprocLaunchThreadCpuS=summary([r["inproc"]["launchThreadCpuS"] for r in rounds]))
    if baseline is not None:
        base_ratios = [r["ratioBaseline"] for r in rounds]
        extra |= {"ratioBaselineSpeedOverBare": {"median": round(median(base_ratios), 4),
                                                "min": round(min(base_ratios), 4), "max": round(max(base_ratios), 4)},
                 "baselineS": summary([r["baseline"]["wallS"] for r in rounds]),
                 "baselineWorkerGenerateS": summary([r["baseline"]["generateS"] for r in rounds]),
                 "baselineWorkerWriteS": summary([r["baseline"]["writeS"] for r in rounds])}
    return {**extra,
        "rounds": rounds,
        "ratioStackSpeedOverBare": {"median": round(median(ratios), 4), "min": round(min(ratios), 4),
                                    "max": round(max(ratios), 4)},
        "bareS": summary([r["bare"]["wallS"] for r in rounds]),
        "bareGenerateS": summary([r["bare"]["generateS"] for r in rounds]),
        "bareWriteS": summary([r["bare"]["writeS"] for r in rounds]),
        "stackS": summary([r["stack"]["wallS"] for r in rounds]),
        "stackWorkerGenerateS": summary([r["stack"]["generateS"] for r in rounds]),
        "stackWorkerWriteS": summary([r["stack"]["writeS"] for r in rounds]),
        "stackOutsideWorkerS": summary([r["stack"]["wallS"] - r["stack"]["generateS"] - r["stack"]["writeS"]
                                        for r in rounds]),
        "sameImageRounds": sum(1 for r in rounds if r["sameImage"]),
        "pixelsStackVsBare": pixels_summary(rounds),
    }


def phase_bare_batch(args, bare: Bare, seed0: int) -> dict[str, Any]:
    bare.generate(gen_params(args, seed0), batch=args.bare_batch)
    runs = [bare.generate(gen_params(args, seed0 + 10 * (i + 1)), batch=args.bare_batch)["wallS"]
            for i in range(args.batch_runs)]
    per_image = [r / args.bare_batch for r in runs]
    log(f"bare batch {args.bare_batch}: {median(per_image):.3f} s/image")
    return {"batch": args.bare_batch, "callS": summary(runs), "perImageS": summary(per_image),
            "imagesPerS": round(1 / median(per_image), 4)}


def phase_load(args, stack: Stack, bare: Bare, seed0: int) -> dict[str, Any]:
    def bare_b1(n: int, seed: int) -> list[float]:
        return [bare.generate(gen_params(args, seed + i))["wallS"] for i in range(n)]

    stack.ask({"cmd": "concurrent", "params": stack_params(args, seed0), "clients": args.clients,
               "requests": args.clients})  # warm-up: the batch shapes
    before = bare_b1(args.bare_reference, seed0 + 100)
    reply = stack.ask({"cmd": "concurrent", "params": stack_params(args, seed0 + 200), "clients": args.clients,
                       "requests": args.requests})
    after = bare_b1(args.bare_reference, seed0 + 300)
    bare_rate = 1 / median(before + after)
    stack_rate = reply["images"] / reply["wallS"]
    log(f"load: {args.clients} clients, max batch {args.max_batch}: {stack_rate:.3f} images/s vs bare batch 1 "
        f"{bare_rate:.3f} → {stack_rate / bare_rate:.2f}×; client wall/request median {median(reply['perRequestS']):.2f} s")
    return {"clients": args.clients, "maxBatch": args.max_batch, "requests": reply["images"],
            "wallS": round(reply["wallS"], 3), "stackImagesPerS": round(stack_rate, 4),
            "clientWallPerRequestS": summary(reply["perRequestS"]),
            "wallPerImageS": round(reply["wallS"] / reply["images"], 4),
            "bareBatch1S": summary(before + after), "bareBatch1ImagesPerS": round(bare_rate, 4),
            "ratioStackOverBareBatch1": round(stack_rate / bare_rate, 3)}


def _log_lines(path: Path, needle: str, start: int) -> list[dict[str, Any]]:
    """JSON fields of the stack log's worker lines containing ``needle``, from byte ``start`` on."""
    found = []
    with open(path, "rb") as handle:
        handle.seek(start)
        for line in handle.read().decode(errors="replace").splitlines():
            if needle in line and "{" in line:
                try:
                    found.append(json.loads(line[line.index("{"):]))
                except ValueError:
                    found.append({"raw": line[:400]})
    return found


def two_sided_rounds(args, stack: Stack, bare: Bare, seed0: int, label: str) -> list[dict[str, Any]]:
    """``--compiled-rounds`` rounds of one bare and one stack image each, the order alternating."""
    rounds = []
    for r in range(args.compiled_rounds):
        row: dict[str, Any] = {}
        for side in (("bare", "stack") if r % 2 == 0 else ("stack", "bare")):
            row[side] = (bare.generate(gen_params(args, seed0 + r)) if side == "bare"
                         else stack.ask({"cmd": "gen", "params": stack_params(args, seed0 + r)}))
        row["ratio"] = row["bare"]["wallS"] / row["stack"]["wallS"]
        # Same seed on both sides: how far the compiled lane's pixels are from the other side's.
        row["pixels"] = pixel_difference(row["bare"]["paths"][0], row["stack"]["paths"][0])
        rounds.append(row)
        log(f"{label} round {r}: bare {row['bare']['wallS']:.3f} s, stack {row['stack']['wallS']:.3f} s, "
            f"ratio {row['ratio']:.3f}; pixels {row['pixels']}")
    return rounds


def pixels_summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The worst pixel differences over the rounds (see ``pixel_difference``)."""
    diffs = [r["pixels"] for r in rounds]
    return {"maxAbs": max(d["maxAbs"] for d in diffs), "meanAbsMax": max(d["meanAbs"] for d in diffs),
            "shareOver8Max": max(d["shareOver8"] for d in diffs)} if diffs else {}


def compile_bare(bare: Bare, args: argparse.Namespace) -> tuple[Any, float]:
    """Plain diffusers + torch.compile with the lane's settings (channels_last UNet, fullgraph,
    static shapes, ``conv_1x1_as_mm``), no router; compiled by one batch-1 call. Returns the eager
    UNet (to put back) and the seconds of that first call."""
    import torch

    eager = bare.pipe.unet
    eager.to(memory_format=torch.channels_last)
    torch._inductor.config.conv_1x1_as_mm = True
    bare.pipe.unet = torch.compile(eager, fullgraph=True, dynamic=False,
                                   mode=os.environ.get("DOPS_COMPILE_MODE") or "default")
    started = time.perf_counter()
    bare.generate(gen_params(args, 60))
    return eager, time.perf_counter() - started


def compiled_vs_compiled(args, stack: Stack, bare: Bare) -> dict[str, Any]:
    """Batch 1, the compiled stack against bare diffusers compiled the same way, interleaved."""
    import torch

    eager, first = compile_bare(bare, args)
    log(f"bare compiled: first call (compile) {first:.1f} s")
    try:
        bare.generate(gen_params(args, 61))
        stack.ask({"cmd": "gen", "params": stack_params(args, 61)})
        rounds = two_sided_rounds(args, stack, bare, 800, "both compiled")
    finally:
        bare.pipe.unet = eager.to(memory_format=torch.contiguous_format)
    return {"bareFirstCallS": round(first, 2), "rounds": rounds,
            "ratioCompiledStackOverBareCompiled": round(median([r["ratio"] for r in rounds]), 4),
            "pixelsVsBareCompiled": pixels_summary(rounds),
            "stackS": summary([r["stack"]["wallS"] for r in rounds]),
            "bareCompiledS": summary([r["bare"]["wallS"] for r in rounds])}


def phase_compiled(args, base_env: dict[str, str], load_cmd: dict[str, Any], bare: Bare, log_path: Path,
                   workdir: Path, bare_rate: float | None, saved: Any = None) -> dict[str, Any]:
    """The compiled lane: the first load (compiles every shape), batch-1 rounds of that stack
    against bare eager, the concurrent load and the recompiles after warm-up; then a restarted
    stack's load from the inductor cache on disk. ``saved(out)`` is called after each step, so a
    run cut short keeps what it measured."""
    env = {**base_env, "DOPS_COMPILE_SHAPES": args.compile_shapes, "DOPS_COMPILE_CACHE_DIR": str(workdir / "inductor"),
           "DOPS_INFERENCE_MAX_BATCH": str(args.max_batch)}
    out: dict[str, Any] = {"shapes": args.compile_shapes, "loads": []}
    keep = saved or (lambda _out: None)
    for attempt in ("first", "cached"):
        start = log_path.stat().st_size if log_path.exists() else 0
        if attempt == "cached":  # --cached-env: the restart's settings (e.g. one knob off, an A/B on one cache)
            env = {**env, **dict(item.partition("=")[::2] for item in args.cached_env)}
        stack = Stack(args.node, args.bundle, env, log_path)
        try:
            reply = stack.ask(load_cmd)
            ready = _log_lines(log_path, "compiled lane ready", start)
            failed = _log_lines(log_path, "compiling the UNet failed", start)
            out["loads"].append({"attempt": attempt, "loadModelS": round(reply["loadS"], 3),
                                 "lane": ready[-1] if ready else None, "failed": failed[-1] if failed else None})
            log(f"compiled lane, {attempt} load: {reply['loadS']:.1f} s; {ready[-1] if ready else failed}")
            keep(out)
            if attempt == "cached":
                if args.cached_load and args.requests > 0 and "batch1" in out:
                    out["loadCached"] = {**compiled_load(args, stack, 1 / out["batch1"]["bareEagerS"]["median"]),
                                         "env": args.cached_env}
                    keep(out)
                if args.bare_compiled:
                    out["batch1BothCompiled"] = compiled_vs_compiled(args, stack, bare)
                    keep(out)
                continue
            for i in range(args.warmup):
                bare.generate(gen_params(args, 70 + i))
                stack.ask({"cmd": "gen", "params": stack_params(args, 70 + i)})
            rounds = two_sided_rounds(args, stack, bare, 700, "compiled stack vs bare eager")
            out["batch1"] = {"rounds": rounds,
                             "ratioCompiledStackOverBareEager": round(median([r["ratio"] for r in rounds]), 4),
                             "pixelsVsBareEager": pixels_summary(rounds),
                             "stackS": summary([r["stack"]["wallS"] for r in rounds]),
                             "bareEagerS": summary([r["bare"]["wallS"] for r in rounds])}
            keep(out)
            if args.requests > 0:
                out["load"] = compiled_load(args, stack, bare_rate or 1 / out["batch1"]["bareEagerS"]["median"])
            out["recompileWarnings"] = _log_lines(log_path, "the compiled lane recompiled", start)
            # Counted from the worker's log: with no "lane ready" line the log says nothing, not 0.
            out["recompiles"] = (max([w.get("recompiles", 0) for w in out["recompileWarnings"]], default=0)
                                 if out["loads"][-1]["lane"] is not None else None)
            keep(out)
        finally:
            stack.close()
    return out


def compiled_load(args, stack: Stack, bare_eager_rate: float) -> dict[str, Any]:
    """``--clients`` concurrent clients on the compiled stack (a warm-up round, then ``--requests``):
    images/s against bare eager batch 1 (``bare_eager_rate``, images/s), client and per-image wall."""
    stack.ask({"cmd": "concurrent", "params": stack_params(args, 9000), "clients": args.clients,
               "requests": args.clients})
    reply = stack.ask({"cmd": "concurrent", "params": stack_params(args, 9500), "clients": args.clients,
                       "requests": args.requests})
    rate = reply["images"] / reply["wallS"]
    log(f"compiled load: {rate:.3f} images/s = {rate / bare_eager_rate:.2f}× bare eager batch 1; client wall "
        f"median {median(reply['perRequestS']):.2f} s")
    return {"clients": args.clients, "maxBatch": args.max_batch, "requests": reply["images"],
            "wallS": round(reply["wallS"], 3), "stackImagesPerS": round(rate, 4),
            "ratioStackOverBareEagerBatch1": round(rate / bare_eager_rate, 3),
            "clientWallPerRequestS": summary(reply["perRequestS"]),
            "wallPerImageS": round(reply["wallS"] / reply["images"], 4)}


def _pixels_part(pixels: dict[str, Any] | None) -> str:
    if not pixels:
        return "-"
    return (f"largest difference {pixels['maxAbs']}, mean at most {pixels['meanAbsMax']}, at most "
            f"{pixels['shareOver8Max'] * 100:.3f} % of pixels off by more than 8")


def _vae_part(vae: dict[str, Any] | None) -> str:
    """The compiled lane report's VAE part in words."""
    if not vae:
        return "-"
    if vae.get("compiled"):
        return f"{vae.get('compileS', '-')} s"
    return f"eager ({vae.get('error') or vae.get('reason') or 'not compiled'})"


# --------------------------------------------------------------------------------------------- #
# Checkpoint, machine, report
# --------------------------------------------------------------------------------------------- #


def random_sdxl(workdir: Path) -> Path:
    """SDXL-size random fp16 single file (UNet + VAE + both text encoders) in the real key layout."""
    from bench_model_switch import configs, ldm_shapes, write_checkpoint

    path = workdir / "models" / "sdxl-random.safetensors"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    size = write_checkpoint(path, ldm_shapes("full", configs("real")), seed=1)
    log(f"wrote {path} ({size / 1e9:.2f} GB) in {time.perf_counter() - started:.1f} s")
    return path


def machine(device: torch.device, node_version: str) -> dict[str, Any]:
    info: dict[str, Any] = {"kernel": platform.release(), "python": platform.python_version(),
                            "cpuCount": os.cpu_count(), "torch": torch.__version__, "node": node_version}
    try:
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                           if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    from importlib.metadata import PackageNotFoundError, version

    for name, dist in (("diffusers", "diffusers"), ("transformers", "transformers"), ("compel", "compel"),
                       ("safetensors", "safetensors"), ("PIL", "pillow")):
        try:
            info[name] = version(dist)
        except PackageNotFoundError:
            info[name] = "unavailable"
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpuMemGiB=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda)
        try:
            info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                            capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return info


def markdown(report: dict[str, Any]) -> str:
    m, s = report["machine"], report["settings"]
    lines = [f"# GPU benchmark: stack vs bare diffusers — {m.get('gpu', 'cpu')} ({report['date'][:10]})", "",
             f"Machine: {m.get('gpu', 'cpu')} ({m.get('gpuMemGiB', '-')} GiB, driver {m.get('driver', '-')}, CUDA "
             f"{m.get('cuda', '-')}), {m.get('cpu', '?')} × {m.get('cpuCount')}, kernel {m.get('kernel')}; Python "
             f"{m.get('python')}, torch {m.get('torch')}, diffusers {m.get('diffusers')}, transformers "
             f"{m.get('transformers')}, compel {m.get('compel')}, Pillow {m.get('PIL')}, Node {m.get('node')}.", "",
             f"Model: {s['checkpoint']} ({s['dtype']}). Request: txt2img {s['sizePx']}², {s['steps']} Euler steps, "
             f"CFG {s['cfg']}, one image per request unless stated. Command: `{report['command']}`.", "",
             "**bare** = diffusers `pipe(...)` + the worker's PNG writer in one process; **stack** = gRPC Generate "
             "→ inference service → device lane → worker → PNG, timed at the client. Ratios are stack speed ÷ "
             "bare speed (bare seconds ÷ stack seconds), from this run.", ""]
    if "loads" in report:
        lo = report["loads"]
        lines += ["## Loads", "",
                  "| what | median s | n |", "|---|---|---|",
                  f"| stack LoadModel RPC (disk, page cache warm) | {lo['stackLoadS'].get('median')} | {lo['stackLoadS']['n']} |",
                  f"| bare load (diffusers build + .to(device)) | {lo['bareLoadS'].get('median')} | {lo['bareLoadS']['n']} |",
                  f"| RAM-tier switch: UnloadModel(VRAM) + LoadModel | {lo['ramTierSwitch']['switchS'].get('median')} | {lo['ramTierSwitch']['switchS']['n']} |",
                  f"| of which LoadModel (RAM → VRAM) | {lo['ramTierSwitch']['loadModelS'].get('median')} | {lo['ramTierSwitch']['loadModelS']['n']} |",
                  "", f"Load through the stack ÷ bare load (median of interleaved pairs): **{lo['stackOverBare']}**.", ""]
    if "paired" in report:
        p = report["paired"]
        r = p["ratioStackSpeedOverBare"]
        lines += ["## Batch 1, paired rounds", "",
                  f"{len(p['rounds'])} rounds after {s['warmup']} warm-up pairs, order alternating. "
                  f"**stack ÷ bare = {r['median']}** (median of per-round ratios; min {r['min']}, max {r['max']}).", "",
                  "| side | median s | p90 | min | max |", "|---|---|---|---|---|"]
        for label, key in (("bare (pipe + PNG)", "bareS"), ("bare pipe only", "bareGenerateS"),
                           ("bare PNG write", "bareWriteS"), ("stack (client wall)", "stackS"),
                           ("stack: worker generate", "stackWorkerGenerateS"),
                           ("stack: worker PNG write", "stackWorkerWriteS"),
                           ("stack: outside the worker's timings", "stackOutsideWorkerS")):
            v = p[key]
            lines.append(f"| {label} | {v.get('median')} | {v.get('p90')} | {v.get('min')} | {v.get('max')} |")
        if "baselineS" in p:
            rb = p["ratioBaselineSpeedOverBare"]
            for label, key in (("baseline stack (client wall)", "baselineS"),
                               ("baseline: worker generate", "baselineWorkerGenerateS"),
                               ("baseline: worker PNG write", "baselineWorkerWriteS")):
                v = p[key]
                lines.append(f"| {label} | {v.get('median')} | {v.get('p90')} | {v.get('min')} | {v.get('max')} |")
            lines += ["", f"Baseline stack (worker sources `{s.get('baselineSrc')}`) ÷ bare = **{rb['median']}** "
                          f"(min {rb['min']}, max {rb['max']}), in the same rounds."]
        if "inprocS" in p:
            ri = p["ratioInprocSpeedOverBare"]
            lines += ["", f"The worker's `generate` function in the bench's own process (no runtime, no Node) ÷ bare = "
                          f"**{ri['median']}** (min {ri['min']}, max {ri['max']}); median {p['inprocS']['median']} s, "
                          f"its launch thread's CPU {p['inprocLaunchThreadCpuS']['median']} s."]
        cpu = p.get("stackCpuPerRequest")
        if cpu:
            lines += ["", f"CPU per request: bare launch thread {p['bareLaunchThreadCpuS']['median']} s (process "
                          f"{p['bareProcessCpuS']['median']} s); stack tree {cpu['totalMedianS']} s, of which Node "
                          f"{cpu['nodeMedianS']} s; busiest threads (median s): "
                          + ", ".join(f"`{k}` {v}" for k, v in cpu["perThreadMedianS"].items()) + "."]
        lines += ["", f"Same pixels on both sides (same seed) in {p['sameImageRounds']} of {len(p['rounds'])} rounds; "
                      f"stack vs bare (0–255): {_pixels_part(p.get('pixelsStackVsBare'))}.", ""]
    if "bareBatch" in report:
        b = report["bareBatch"]
        lines += [f"## Bare batch {b['batch']}", "",
                  f"{b['perImageS']['median']} s per image ({b['imagesPerS']} images/s), median of {b['callS']['n']} calls.", ""]
    if "load" in report:
        ld = report["load"]
        lines += [f"## {ld['clients']} concurrent clients, lane max batch {ld['maxBatch']}", "",
                  f"{ld['requests']} requests in {ld['wallS']} s: **{ld['stackImagesPerS']} images/s**, "
                  f"**{ld['ratioStackOverBareBatch1']}×** bare eager batch 1 ({ld['bareBatch1ImagesPerS']} images/s, "
                  f"median of {ld['bareBatch1S']['n']} bare images just before and after). Client wall time per "
                  f"request: median {ld['clientWallPerRequestS']['median']} s, p90 {ld['clientWallPerRequestS']['p90']} s; "
                  f"wall time per image (whole run ÷ images) {ld['wallPerImageS']} s.", ""]
    if "compiled" in report:
        c = report["compiled"]
        lines += [f"## Compiled lane (DOPS_COMPILE_SHAPES={c['shapes']})", ""]
        for load in c.get("loads", []):
            lane = load.get("lane") or {}
            lines.append(f"- {load['attempt']} load (LoadModel RPC, compile included): {load['loadModelS']} s; "
                         f"compile+warm-up {lane.get('compileS', '-')} s per shape {lane.get('warmUpS', '-')}"
                         f"; UNet {(lane.get('unet') or {}).get('compileS', '-')} s, VAE decode "
                         f"{_vae_part(lane.get('vae'))}; inductor {lane.get('inductor', '-')}"
                         + (f"; FAILED: {load['failed']}" if load.get("failed") else ""))
        if "batch1" in c:
            b1 = c["batch1"]
            lines.append(f"- batch 1: compiled stack {b1['stackS']['median']} s vs bare eager {b1['bareEagerS']['median']} s: "
                         f"**{b1['ratioCompiledStackOverBareEager']}×** (median of {len(b1['rounds'])} paired rounds); "
                         f"pixels vs eager, same seed (0–255): {_pixels_part(b1.get('pixelsVsBareEager'))}")
        for key, label in (("load", ""), ("loadCached", "restarted stack")):
            if key in c:
                ld = c[key]
                env = f" with {', '.join(ld['env'])}" if ld.get("env") else ""
                lines.append(f"- {label + env + ', ' if label else ''}{ld['clients']} clients, max batch "
                             f"{ld['maxBatch']}: **{ld['stackImagesPerS']} images/s = "
                             f"{ld['ratioStackOverBareEagerBatch1']}×** bare eager batch 1; client wall per request "
                             f"median {ld['clientWallPerRequestS']['median']} s, wall per image {ld['wallPerImageS']} s")
        if "batch1BothCompiled" in c:
            bc = c["batch1BothCompiled"]
            lines.append(f"- batch 1, both compiled: stack {bc['stackS']['median']} s vs bare compiled "
                         f"{bc['bareCompiledS']['median']} s: **{bc['ratioCompiledStackOverBareCompiled']}×** (median of "
                         f"{len(bc['rounds'])} paired rounds; bare's compile {bc['bareFirstCallS']} s); pixels vs bare compiled: "
                         f"{_pixels_part(bc.get('pixelsVsBareCompiled'))}")
        lines += [f"- recompiles after warm-up: {c.get('recompiles') if c.get('recompiles') is not None else 'not seen (no worker log)'}", ""]
    if "compiledError" in report:
        lines += [f"Compiled phase failed: `{report['compiledError']}`", ""]
    lines += [f"Whole run {report['totalS']} s.", ""]
    return "\n".join(lines)


_out: Path | None = None


def save(report: dict[str, Any]) -> None:
    """Writes the report so far (after each phase: a later failure keeps the earlier figures)."""
    assert _out is not None
    _out.parent.mkdir(parents=True, exist_ok=True)
    _out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    _out.with_suffix(".md").write_text(markdown(report))
    log(f"wrote {_out}.json and .md")


def main() -> None:
    global _out
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--config-dir", default=None)
    parser.add_argument("--size-px", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--cfg", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--loads", type=int, default=2)
    parser.add_argument("--ram-switches", type=int, default=5)
    parser.add_argument("--bare-batch", type=int, default=4, help="0 = skip")
    parser.add_argument("--batch-runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=32, help="requests of the load phase (0 = skip it)")
    parser.add_argument("--max-batch", type=int, default=4)
    parser.add_argument("--bare-reference", type=int, default=3, help="bare batch-1 images before and after the load phase")
    parser.add_argument("--phases", default="loads,paired,batch,load")
    parser.add_argument("--node", default="node")
    parser.add_argument("--bundle", default=str(REPO / ".gpu-bench" / "js" / "dist" / "stack.cjs"))
    parser.add_argument("--workdir", default="/tmp/dops-gpu-bench")
    parser.add_argument("--out", default=None, help="results prefix (default: $OUT/gpu-<gpu> or tools/bench/results/gpu-<device>)")
    parser.add_argument("--compile-shapes", default="1024x1024@1,1024x1024@4",
                        help="DOPS_COMPILE_SHAPES of the compiled phase (add 'compiled' to --phases)")
    parser.add_argument("--compiled-rounds", type=int, default=6)
    parser.add_argument("--baseline-src", default=None,
                        help="another python-workers/src for a third side of the paired phase (the 'baseline' stack)")
    parser.add_argument("--bare-compiled", action="store_true",
                        help="compiled phase: also compile bare diffusers the same way and pair it with the cached-start stack")
    parser.add_argument("--inproc", action="store_true",
                        help="a third side of the paired phase: the worker's generate function in this process")
    parser.add_argument("--stack-env", action="append", default=[], help="KEY=VALUE for the stack's worker (repeatable)")
    parser.add_argument("--cached-env", action="append", default=[],
                        help="KEY=VALUE for the compiled phase's restarted stack only (repeatable)")
    parser.add_argument("--cached-load", action="store_true",
                        help="the compiled phase's restarted stack runs the --clients load too")
    args = parser.parse_args()
    phases = set(args.phases.split(","))

    started = time.perf_counter()
    device = torch.device(args.device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    workdir = Path(args.workdir).resolve()
    (workdir / "artifacts").mkdir(parents=True, exist_ok=True)
    checkpoint = Path(args.checkpoint).resolve() if args.checkpoint else random_sdxl(workdir)
    config_dir = str(Path(args.config_dir).resolve()) if args.config_dir else None
    node_version = subprocess.run([args.node, "--version"], capture_output=True, text=True).stdout.strip()
    info = machine(device, node_version)
    log(f"machine: {json.dumps(info)}")

    model_root = os.pathsep.join(sorted({str(checkpoint.parent), *([config_dir] if config_dir else [])}))
    base_env = {**os.environ, "DOPS_BENCH_BACKEND": "cuda" if device.type == "cuda" else "cpu",
                "DOPS_BENCH_PYTHON": sys.executable, "DOPS_BENCH_WORKDIR": str(workdir),
                "DOPS_BENCH_MODEL_ROOT": model_root, "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    for item in args.stack_env:
        key, _, value = item.partition("=")
        base_env[key] = value
    load_cmd = {"cmd": "load", "modelId": "bench", "path": str(checkpoint), "configDir": config_dir or ""}
    log_path = workdir / "stack.log"
    bare = Bare(checkpoint, config_dir, device, dtype, workdir / "artifacts")
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(sys.argv), "machine": info,
        "settings": {"checkpoint": checkpoint.name, "dtype": str(dtype).removeprefix("torch."), "sizePx": args.size_px,
                     "steps": args.steps, "cfg": args.cfg, "rounds": args.rounds, "warmup": args.warmup,
                     "stackEnv": args.stack_env, "cachedEnv": args.cached_env}}

    default_name = "gpu-" + (info.get("gpu", "cpu").lower().replace("nvidia ", "").split()[0] if device.type == "cuda" else "cpu")
    _out = Path(args.out) if args.out else (Path(os.environ["OUT"]) / default_name if os.environ.get("OUT")
                                           else REPO / "tools" / "bench" / "results" / default_name)
    report["totalS"] = None
    stack = Stack(args.node, args.bundle, {**base_env, "DOPS_INFERENCE_MAX_BATCH": "1"}, log_path)
    baseline = None
    try:
        log(f"stack ready on {stack.hello.get('deviceId')}")
        if "loads" in phases:
            report["loads"] = phase_loads(args, stack, bare, load_cmd)
        else:
            stack.ask(load_cmd)
            bare.load()
        if "paired" in phases:
            if args.baseline_src:
                # The same stack with another copy of the worker's sources (e.g. the last commit's).
                src = str(REPO / "python-workers" / "src")
                paths = [args.baseline_src if p == src else p for p in base_env["PYTHONPATH"].split(os.pathsep)]
                baseline = Stack(args.node, args.bundle, {**base_env, "PYTHONPATH": os.pathsep.join(paths),
                                                          "DOPS_INFERENCE_MAX_BATCH": "1"}, workdir / "baseline.log")
                baseline.ask(load_cmd)
                report["settings"]["baselineSrc"] = args.baseline_src
            report["paired"] = phase_paired(args, stack, bare, seed0=1, baseline=baseline)
            save(report)
    finally:
        stack.close()
        if baseline is not None:
            baseline.close()
    if "compiled" in phases:  # on CPU the worker keeps no lane: the phase then only checks itself
        # Before the eager batch/load phases: on a short lease the compiled figures matter most.
        def keep(partial: dict[str, Any]) -> None:
            report["compiled"] = partial
            save(report)

        try:
            report["compiled"] = phase_compiled(args, base_env, load_cmd, bare, log_path, workdir, None, keep)
        except Exception as exc:  # noqa: BLE001 - keep what the other phases measured
            log(f"compiled phase failed: {exc!r}")
            report["compiledError"] = repr(exc)
        save(report)
    if "batch" in phases and args.bare_batch > 0:
        report["bareBatch"] = phase_bare_batch(args, bare, seed0=5000)
        save(report)
    if "load" in phases and args.requests > 0:
        stack = Stack(args.node, args.bundle, {**base_env, "DOPS_INFERENCE_MAX_BATCH": str(args.max_batch)}, log_path)
        try:
            stack.ask(load_cmd)
            report["load"] = phase_load(args, stack, bare, seed0=9000)
            save(report)
        finally:
            stack.close()
    report["totalS"] = round(time.perf_counter() - started, 1)
    save(report)
    print(markdown(report))


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
