#!/usr/bin/env python3
"""Model switch benchmark: two SDXL-sized random checkpoints, switched A→B→A… either from disk
(RAM tier dropped each time) or between two RAM-tier entries, through the worker's own
``dops_worker.models.cache.ModelCache`` (the code path of a real load: identify → read → build →
hold in RAM (pinned on CUDA) → to device).

What one "switch" is (timed with a host clock, after ``torch.cuda.synchronize`` — ModelCache
synchronises inside ``_to_device``):

- disk:  ``cache.unload(prev, tier="ram")`` (drops RAM and device copies) + ``cache.load(next)``
         (read_s + build_s + pinning + to_device_s). Two variants:
         ``disk_warm`` — the file is in the OS page cache (it was read before);
         ``disk_cold`` — ``posix_fadvise(POSIX_FADV_DONTNEED)`` on the file just before the load; the
         fraction of its pages still resident (mincore) is recorded. In a VM the host may still cache
         the virtual disk, so "cold" is cold for the guest only.
- ram:   ``cache.unload(prev, tier="device")`` (keeps the pinned CPU copy) + ``cache.load(next)``,
         which must come back with ``source == "ram"``: what the worker does on a RAM-tier hit.
         On CPU, "to device" is a no-op, so this is "reuse the built pipeline from RAM".

Parts (``--parts``):
- ``unet``: checkpoint holds the SDXL UNet only (2.57 G params, 5.1 GB fp16), in the real SGM key
  layout (``model.diffusion_model.*``); loaded with a config folder whose model_index.json keeps
  unet + scheduler and nulls the other components (same loader, same ModelCache).
- ``full``: UNet + VAE + CLIP-L + OpenCLIP-G (3.47 G params, 6.9 GB fp16), the real SDXL base
  layout; config = a copy of the shipped ``configs/sdxl-base``.

``--size tiny`` shrinks the models (~1/10 the bytes) to test the script; ``--size real`` is SDXL.

Usage (repo root):
  PYTHONPATH=python-workers/src .venv/bin/python tools/bench/model_switch/bench_model_switch.py \
      --device cpu --parts unet --out tools/bench/results/model_switch-cpu
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import json
import mmap
import os
import platform
import shutil
import statistics
import struct
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tools" / "fixtures"))
sys.path.insert(0, str(REPO / "python-workers" / "src"))

from ldm_layout import clip_to_ldm, open_clip_to_ldm, unet_to_ldm, vae_to_ldm  # noqa: E402

from dops_worker.configs import CONFIG_ROOT  # noqa: E402
from dops_worker.models.cache import ModelCache  # noqa: E402

SHIPPED = CONFIG_ROOT / "sdxl-base"
POOL_ELEMS = 1 << 26  # 64 Mi fp16 random values (128 MB) per file, sliced at random offsets

# --------------------------------------------------------------------------------------------- #
# Checkpoint creation (streamed: never holds a whole checkpoint in memory)
# --------------------------------------------------------------------------------------------- #


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def configs(size: str) -> dict[str, dict]:
    unet = _json(SHIPPED / "unet" / "config.json")
    vae = _json(SHIPPED / "vae" / "config.json")
    te = _json(SHIPPED / "text_encoder" / "config.json")
    te2 = _json(SHIPPED / "text_encoder_2" / "config.json")
    if size == "tiny":
        # Multiples of 32 (GroupNorm) divisible by the head counts 5/10/20.
        unet.update(block_out_channels=[160, 320, 640], transformer_layers_per_block=[1, 1, 2])
        te.update(num_hidden_layers=2)
        te2.update(num_hidden_layers=2)
    return {"unet": unet, "vae": vae, "text_encoder": te, "text_encoder_2": te2}


def write_config_folder(folder: Path, part: str, cfgs: dict[str, dict]) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    index = _json(SHIPPED / "model_index.json")
    subs = ["unet"] if part == "unet" else ["unet", "vae", "text_encoder", "text_encoder_2"]
    if part == "unet":
        for name in ("vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"):
            index[name] = [None, None]
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    shutil.copytree(SHIPPED / "scheduler", folder / "scheduler")
    for sub in subs:
        (folder / sub).mkdir()
        (folder / sub / "config.json").write_text(json.dumps(cfgs[sub], indent=2))
    return folder


def ldm_shapes(part: str, cfgs: dict[str, dict]) -> dict[str, tuple[int, ...]]:
    """Original-layout tensor names and shapes, from models built on the meta device."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    def clean(c: dict) -> dict:
        return {k: v for k, v in c.items() if not k.startswith("_")}

    out: dict[str, torch.Tensor] = {}
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(clean(cfgs["unet"]))
        up_attn = [t.startswith("CrossAttn") for t in cfgs["unet"]["up_block_types"]]
        out.update(unet_to_ldm(dict(unet.state_dict()), up_attn))
        del unet
        if part == "full":
            vae = AutoencoderKL.from_config(clean(cfgs["vae"]))
            out.update(vae_to_ldm(dict(vae.state_dict())))
            del vae

            def text(c: dict, cls):
                keep = {k: v for k, v in c.items() if k not in ("architectures",) and not k.startswith("_")}
                return cls(CLIPTextConfig(**keep))
            te = text(cfgs["text_encoder"], CLIPTextModel)
            out.update(clip_to_ldm(dict(te.state_dict()), "conditioner.embedders.0.transformer."))
            te2 = text(cfgs["text_encoder_2"], CLIPTextModelWithProjection)
            out.update(open_clip_to_ldm(dict(te2.state_dict()), "conditioner.embedders.1.model."))
    return {k: tuple(v.shape) for k, v in out.items()}


def write_checkpoint(path: Path, shapes: dict[str, tuple[int, ...]], seed: int) -> int:
    """Random fp16 safetensors file, streamed tensor by tensor. Returns its size in bytes."""
    rng = np.random.default_rng(seed)
    pool = (rng.standard_normal(POOL_ELEMS, dtype=np.float32) * 0.02).astype(np.float16)
    header: dict[str, object] = {"__metadata__": {"modelspec.title": path.stem, "generator": "bench_model_switch"}}
    offset = 0
    names = sorted(shapes)
    for name in names:
        n = int(np.prod(shapes[name], dtype=np.int64)) if shapes[name] else 1
        header[name] = {"dtype": "F16", "shape": list(shapes[name]), "data_offsets": [offset, offset + 2 * n]}
        offset += 2 * n
    raw = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    raw += b" " * (-(8 + len(raw)) % 8)
    tmp = path.with_suffix(".partial")
    with open(tmp, "wb", buffering=0) as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for name in names:
            n = int(np.prod(shapes[name], dtype=np.int64)) if shapes[name] else 1
            while n > 0:
                start = int(rng.integers(0, POOL_ELEMS))
                take = min(n, POOL_ELEMS - start)
                f.write(memoryview(pool[start:start + take]).cast("B"))
                n -= take
        os.fsync(f.fileno())
    tmp.rename(path)
    return path.stat().st_size


# --------------------------------------------------------------------------------------------- #
# Page cache: drop (posix_fadvise) and measure (mincore)
# --------------------------------------------------------------------------------------------- #

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]


def resident_fraction(path: Path) -> float | None:
    size = path.stat().st_size
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            return None
        try:
            pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
            vec = (ctypes.c_ubyte * pages)()
            if _libc.mincore(ctypes.c_void_p(addr), size, vec) != 0:
                return None
            return sum(b & 1 for b in bytes(vec)) / pages
        finally:
            _libc.munmap(ctypes.c_void_p(addr), size)
    finally:
        os.close(fd)


def drop_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------- #
# Measurement
# --------------------------------------------------------------------------------------------- #


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def stats(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"n": int(a.size), "median": float(np.median(a)), "p90": float(np.percentile(a, 90)),
            "mean": float(a.mean()), "min": float(a.min()), "max": float(a.max())}


def disk_switches(cache: ModelCache, files: list[Path], cfg: Path, n: int, cold: bool,
                  device: torch.device) -> list[dict]:
    """``files[0]`` must be the one held now; alternates, so after an odd ``n`` the other one is."""
    out = []
    for i in range(n):
        prev, nxt = files[i % 2], files[(i + 1) % 2]
        res_before = None
        if cold:
            drop_page_cache(nxt)
            res_before = resident_fraction(nxt)
        sync(device)
        t0 = time.perf_counter()
        cache.unload(prev, tier="ram", config_dir=cfg)
        gc.collect()
        t1 = time.perf_counter()
        loaded = cache.load(nxt, config_dir=cfg)
        sync(device)
        t2 = time.perf_counter()
        assert loaded.source == "disk", loaded.source
        rec = {"i": i, "file": nxt.name, "unload_s": t1 - t0, "load_s": t2 - t1, "switch_s": t2 - t0,
               **loaded.timings, "resident_before": res_before}
        rec["pin_and_rest_s"] = rec["load_s"] - rec["read_s"] - rec["build_s"] - rec["to_device_s"]
        del loaded
        out.append(rec)
        print(f"    disk{'-cold' if cold else '-warm'} {i}: switch {rec['switch_s']:.3f}s "
              f"(read {rec['read_s']:.3f} build {rec['build_s']:.3f} to_dev {rec['to_device_s']:.3f} "
              f"rest {rec['pin_and_rest_s']:.3f} unload {rec['unload_s']:.3f})"
              + (f" resident {res_before:.3f}" if res_before is not None else ""), flush=True)
    return out


def ram_switches(cache: ModelCache, files: list[Path], cfg: Path, n: int, device: torch.device) -> list[dict]:
    out = []
    for i in range(n):
        prev, nxt = files[i % 2], files[(i + 1) % 2]
        sync(device)
        t0 = time.perf_counter()
        cache.unload(prev, tier="device", config_dir=cfg)
        t1 = time.perf_counter()
        loaded = cache.load(nxt, config_dir=cfg)
        sync(device)
        t2 = time.perf_counter()
        assert loaded.source == "ram", loaded.source
        out.append({"i": i, "file": nxt.name, "unload_s": t1 - t0, "load_s": t2 - t1, "switch_s": t2 - t0,
                    **loaded.timings})
        del loaded
    s = stats([r["switch_s"] for r in out])
    print(f"    ram: median {s['median']:.4f}s p90 {s['p90']:.4f}s over {s['n']}", flush=True)
    return out


def device_bytes(device: torch.device) -> int | None:
    return torch.cuda.memory_allocated(device) if device.type == "cuda" else None


def run_part(part: str, args, device: torch.device) -> dict:
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    cfgs = configs(args.size)
    cfg = write_config_folder(work / f"config-{part}-{args.size}", part, cfgs)
    t = time.perf_counter()
    shapes = ldm_shapes(part, cfgs)
    params = sum(int(np.prod(s)) if s else 1 for s in shapes.values())
    files = []
    for j, tag in enumerate("AB"):
        path = work / f"sdxl-{part}-{args.size}-{tag}.safetensors"
        if not (args.reuse_files and path.exists()):
            write_checkpoint(path, shapes, seed=1000 + j)
        files.append(path)
    gen_s = time.perf_counter() - t
    size = files[0].stat().st_size
    print(f"  [{part}] {len(shapes)} tensors, {params / 1e9:.3f} G params, {size / 1e9:.2f} GB per file; "
          f"files ready in {gen_s:.1f}s", flush=True)

    result: dict = {"part": part, "size": args.size, "tensors": len(shapes), "params": params,
                    "file_bytes": size, "files": [str(f) for f in files], "config_dir": str(cfg),
                    "create_files_s": gen_s}
    cache = ModelCache(device, torch.float16)
    # Warm-up: first loads pay imports, CUDA context, allocator growth; they also fill the page cache.
    t = time.perf_counter()
    for f in files:
        cache.load(f, config_dir=cfg)
    sync(device)
    result["warmup_s"] = time.perf_counter() - t
    comps = {name: sum(p.numel() for p in m.parameters())
             for name, m in cache.load(files[1], config_dir=cfg).pipeline.components.items()
             if isinstance(m, torch.nn.Module)}
    result["components_params"] = comps
    print(f"  [{part}] warm-up {result['warmup_s']:.1f}s; components {comps}", flush=True)

    # (2) RAM tier: both entries held in RAM (pinned on CUDA); only B on the device to start.
    cache.unload(files[0], tier="device", config_dir=cfg)
    result["ram"] = ram_switches(cache, [files[1], files[0]], cfg, args.n_ram, device)
    result["device_bytes_one_model"] = device_bytes(device)

    # (1) disk: drop RAM tier each switch. Start with only A resident.
    cache.unload(files[0], tier="ram", config_dir=cfg)
    cache.unload(files[1], tier="ram", config_dir=cfg)
    gc.collect()
    cache.load(files[0], config_dir=cfg)
    result["disk_warm"] = disk_switches(cache, files, cfg, args.n_disk, cold=False, device=device)
    held = files if args.n_disk % 2 == 0 else files[::-1]
    if args.cold:
        result["disk_cold"] = disk_switches(cache, held, cfg, args.n_disk, cold=True, device=device)
    result["page_cache_resident_after"] = {f.name: resident_fraction(f) for f in files}

    summary = {}
    for mode in ("ram", "disk_warm", "disk_cold"):
        if mode not in result:
            continue
        recs = result[mode]
        summary[mode] = {key: stats([r[key] for r in recs])
                         for key in ("switch_s", "load_s", "unload_s", "read_s", "build_s", "to_device_s")
                         if all(r.get(key) is not None for r in recs)}
        if mode == "disk_cold":
            summary[mode]["resident_before_mean"] = float(np.mean([r["resident_before"] or 0 for r in recs]))
    ram_med = summary["ram"]["switch_s"]["median"]
    for mode in ("disk_warm", "disk_cold"):
        if mode in summary:
            summary[mode]["ratio_vs_ram_median"] = summary[mode]["switch_s"]["median"] / ram_med
    result["summary"] = summary

    # Leave nothing held.
    for f in files:
        cache.unload(f, tier="ram", config_dir=cfg)
    del cache
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    if not args.keep_files:
        for f in files:
            f.unlink(missing_ok=True)
    return result


# --------------------------------------------------------------------------------------------- #
# Machine info and output
# --------------------------------------------------------------------------------------------- #


def machine(device: torch.device, workdir: str) -> dict:
    info: dict = {"hostname": platform.node(), "kernel": platform.release(), "python": platform.python_version(),
                  "cpu_count": os.cpu_count(), "torch": torch.__version__}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu_model"] = next((l.split(":", 1)[1].strip() for l in cpuinfo.splitlines()
                                  if l.startswith("model name")), platform.processor())
        mem = Path("/proc/meminfo").read_text().split("\n")[0]
        info["mem_total_gib_at_start"] = round(int(mem.split()[1]) / 2**20, 1)
    except OSError:
        pass
    try:
        info["sched_affinity_cores"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    for mod in ("diffusers", "transformers", "safetensors", "huggingface_hub", "numpy"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception as e:  # noqa: BLE001
            info[mod] = f"unavailable: {e}"
    info["torch_threads"] = torch.get_num_threads()
    info["workdir"] = workdir
    try:
        st = os.statvfs(workdir)
        info["workdir_free_gb"] = round(st.f_bavail * st.f_frsize / 1e9, 1)
        mounts = Path("/proc/mounts").read_text().splitlines()
        best = max((m.split() for m in mounts if workdir.startswith(m.split()[1])), key=lambda m: len(m[1]))
        info["workdir_fs"] = {"device": best[0], "mount": best[1], "type": best[2]}
    except Exception:  # noqa: BLE001
        pass
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(gpu_name=p.name, gpu_mem_gib=round(p.total_memory / 2**30, 1), cuda=torch.version.cuda,
                    gpu_count=torch.cuda.device_count())
    return info


def fmt(x: float) -> str:
    return f"{x:.3f}" if x >= 0.01 else f"{x * 1000:.2f} ms"


def markdown(report: dict) -> str:
    m = report["machine"]
    dev = report["device"]
    lines = [f"# Model switch benchmark — {report['label']}", "",
             f"Generated {report['finished_at']} by `tools/bench/model_switch/bench_model_switch.py` "
             f"(`{report['command']}`).", "",
             "## Machine", "",
             f"- CPU: {m.get('cpu_model')}, {m.get('cpu_count')} cores visible "
             f"({m.get('sched_affinity_cores')} in affinity), MemTotal {m.get('mem_total_gib_at_start')} GiB at start",
             f"- GPU: {m.get('gpu_name', 'none (device=cpu)')}"
             + (f", {m.get('gpu_mem_gib')} GiB, CUDA {m.get('cuda')}" if 'gpu_name' in m else ""),
             f"- torch {m['torch']}, diffusers {m.get('diffusers')}, transformers {m.get('transformers')}, "
             f"safetensors {m.get('safetensors')}, Python {m['python']}, kernel {m['kernel']}",
             f"- checkpoint files in `{m.get('workdir')}` ({m.get('workdir_fs', {}).get('type', '?')} on "
             f"{m.get('workdir_fs', {}).get('device', '?')})", ""]
    if dev == "cpu":
        lines += ["**On CPU, \"to device\" is a no-op**: a RAM-tier hit returns the already built pipeline, "
                  "so the ram figure is \"reuse the built pipeline from RAM\" (near zero) and the disk figure "
                  "is \"read the file + build the pipeline\". The ratio is therefore not comparable to the "
                  "GPU's pinned-RAM → VRAM ratio.", ""]
    else:
        lines += ["On CUDA the RAM tier is pinned host memory; a RAM-tier switch = `unload(prev, tier='device')` "
                  "+ `load(next)` (source `ram`: pinned → VRAM copy of every tensor, non_blocking, then "
                  "synchronize). A disk switch = `unload(prev, tier='ram')` + `load(next)` (read + build + pin "
                  "+ to device).", ""]
    lines += ["## Results (seconds per switch; median / p90 over N switches, alternating A→B→A…)", "",
              "| part | params | file | mode | N | switch median | p90 | read | build | pin+rest | to device | disk/RAM (median) |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for part in report["parts"]:
        if "error" in part:
            lines.append(f"| {part['part']} | — | — | FAILED: {part['error'].splitlines()[-1][:120]} | | | | | | | | |")
            continue
        s = part["summary"]
        for mode in ("disk_warm", "disk_cold", "ram"):
            if mode not in s:
                continue
            sm = s[mode]
            rest = "—"
            if mode != "ram":
                rest = fmt(float(np.median([r["pin_and_rest_s"] for r in part[mode]])))
            label = {"disk_warm": "disk, page cache warm", "disk_cold": "disk, page cache dropped",
                     "ram": "RAM tier" + (" (pinned)" if dev != "cpu" else "")}[mode]
            if mode == "disk_cold":
                label += f" (resident {sm['resident_before_mean'] * 100:.0f}%)"
            lines.append(
                f"| {part['part']} | {part['params'] / 1e9:.2f} G | {part['file_bytes'] / 1e9:.2f} GB | {label} | "
                f"{sm['switch_s']['n']} | {fmt(sm['switch_s']['median'])} | {fmt(sm['switch_s']['p90'])} | "
                f"{fmt(sm['read_s']['median'])} | {fmt(sm['build_s']['median'])} | {rest} | "
                f"{fmt(sm['to_device_s']['median'])} | "
                f"{(str(round(sm['ratio_vs_ram_median'], 1)) + '×') if 'ratio_vs_ram_median' in sm else '1×'} |")
    lines += ["", "Columns: read = `read_s` (safetensors → CPU state dict), build = `build_s` (diffusers "
              "from_single_file / CLIP conversion), pin+rest = load − read − build − to device (pinning into the "
              "RAM tier on CUDA, bookkeeping), to device = ModelCache's `to_device_s`. Medians of each column "
              "are taken separately (they need not add up).", ""]
    for part in report["parts"]:
        if "error" in part or report["device"] == "cpu":
            continue
        gb = part["file_bytes"] / 1e9
        med = part["summary"]["ram"]["to_device_s"]["median"]
        lines.append(f"- {part['part']}: RAM-tier to-device {gb:.2f} GB in {fmt(med)} → {gb / med:.1f} GB/s "
                     f"(pinned host → HBM).")
    lines += [f"- Notes: {n}" for n in report.get("notes", [])]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--parts", default="unet", help="comma list of unet,full (in that order of running)")
    ap.add_argument("--size", choices=["real", "tiny"], default="real")
    ap.add_argument("--n-ram", type=int, default=20, help="RAM-tier switches")
    ap.add_argument("--n-disk", type=int, default=6, help="disk switches per variant (warm, cold)")
    ap.add_argument("--no-cold", dest="cold", action="store_false", help="skip the posix_fadvise(DONTNEED) variant")
    ap.add_argument("--workdir", default="/tmp/dops_model_switch", help="where the checkpoint files go")
    ap.add_argument("--keep-files", action="store_true")
    ap.add_argument("--reuse-files", action="store_true", help="reuse existing files of the same name")
    ap.add_argument("--label", default=None, help="label for the markdown title (default: device)")
    ap.add_argument("--out", required=True, help="output path without suffix: writes OUT.json and OUT.md")
    ap.add_argument("--note", action="append", default=[])
    args = ap.parse_args()

    device = torch.device(args.device)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"label": args.label or args.device, "device": args.device, "args": vars(args),
              "command": " ".join([Path(sys.executable).name, *sys.argv]),
              "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "machine": machine(device, str(Path(args.workdir).resolve().parent)), "parts": [],
              "notes": list(args.note)}
    if device.type == "cuda":
        report["notes"].append("torch's CUDA host allocator caches freed pinned blocks, so re-pinning in the "
                               "disk runs reuses cached pinned memory (as a long-running worker would).")
    print(json.dumps(report["machine"]), flush=True)

    def flush() -> None:
        report["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
        out.with_suffix(".md").write_text(markdown(report))

    for part in [p.strip() for p in args.parts.split(",") if p.strip()]:
        print(f"== part {part} ({args.size}) on {device}", flush=True)
        t = time.perf_counter()
        try:
            result = run_part(part, args, device)
        except Exception:  # noqa: BLE001 — keep the other parts' results
            traceback.print_exc()
            result = {"part": part, "error": traceback.format_exc()}
        result["part_wall_s"] = time.perf_counter() - t
        report["parts"].append(result)
        flush()
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
