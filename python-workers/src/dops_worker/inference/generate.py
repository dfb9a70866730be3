"""Run one validated GenerateRequest on a loaded pipeline: encode, denoise, decode, write PNGs.

The prompts are encoded once per request (conditioning.py: any length, A1111 weighting, clip
skip) with the LoRAs already applied, and the pipeline gets embeddings, never prompt strings.
Denoising and VAE decoding are separate phases (the pipeline returns latents), so an OOM in the
decode retries only the decode. Each image has its own generator seeded ``seed + i``, so an image
is the same whichever batch it ran in — which is what lets the OOM plan shrink the batch.

A dynamic batch (``request.members``) is the same run with one row per member: the member's own
embeddings (padded to the batch's longest prompt, the padding masked: padding_mask.py), its own
generator and init image / mask, all in one pipeline call; each image is written with the
metadata of the member's solo request (``request.alone(i)``). On this CPU an image of a batch
equals its solo run to within one level of 255, not bit for bit: MKL's GEMM and oneDNN's
convolutions pick kernels by the batch size, so sums come out in another order
(tests/inference/test_inference_members.py).
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from dops_worker.inference.artifacts import write_image, write_png
from dops_worker.inference.compiled import report_recompiles, select_unet
from dops_worker.inference.conditioning import Conditioning, batch_conditioning, encode_prompts
from dops_worker.inference.decode import decode_latents
from dops_worker.inference.inputs import load_controlnets, load_inputs
from dops_worker.inference.lora import applied_loras
from dops_worker.inference.padding_mask import masked_padding
from dops_worker.inference.png_writes import PngWrites
from dops_worker.inference.pipelines import assemble_pipeline, check_preconditions, model_traits
from dops_worker.inference.request import GenerateRequest
from dops_worker.inference.schedulers import make_scheduler
from dops_worker.models.hashes import file_hashes
from dops_worker.protocol.errors import ErrorCode, WorkerError, is_out_of_memory
from dops_worker.runtime.deferred import then

_log = logging.getLogger("dops_worker.inference.generate")

Mitigation = Literal["vae_tiling", "smaller_batch", "model_cpu_offload"]
OOM_PLAN: tuple[Mitigation, ...] = ("vae_tiling", "smaller_batch", "model_cpu_offload")
Phase = Literal["denoise", "decode"]

# Linear latent → RGB approximations (least-squares fits of VAE decodes, as used by ComfyUI's
# latent previews): rows are latent channels, columns R, G, B; output is roughly in [-1, 1].
_LATENT_RGB: dict[str, tuple[list[list[float]], list[float]]] = {
    "sd15": ([[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350],
              [-0.2829, 0.1762, 0.2721], [-0.2120, -0.2616, -0.7177]], [0.0, 0.0, 0.0]),
    "sdxl": ([[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068],
              [0.1076, 0.1111, -0.0362], [-0.3165, -0.2492, -0.2188]], [0.1084, -0.0175, -0.0011]),
}


class ProgressFn(Protocol):
    def __call__(self, step: int, total: int, preview: dict[str, Any] | None = None) -> None: ...


@dataclass
class GenerateHooks:
    """How a run talks to its caller. ``raise_if_cancelled`` raises WorkerError CANCELLED (or
    DEADLINE_EXCEEDED); ``release_memory`` frees device caches after gc (backend-specific)."""

    progress: ProgressFn | None = None
    raise_if_cancelled: Callable[[], None] | None = None
    release_memory: Callable[[], None] | None = None
    # Where to put the memory release after a failed or cancelled run so that the error reply
    # leaves first (the runtime's after-reply queue); None = release before returning.
    defer: Callable[[Callable[[], None]], None] | None = None
    load_controlnet: Callable[[Path], Any] | None = None
    # Called once when the last image is decoded and only its PNG writes remain, with the steps
    # run (the last progress' total): the worker's ``$/progress {phase: "writing"}``.
    writing: Callable[[int], None] | None = None
    clock: Callable[[], float] = time.monotonic

    @staticmethod
    def cancel_check(cancelled: Callable[[], bool]) -> Callable[[], None]:
        """Adapts a ``cancelled() -> bool`` callable to ``raise_if_cancelled``."""

        def check() -> None:
            if cancelled():
                raise WorkerError(ErrorCode.CANCELLED, "the request was cancelled")

        return check


@dataclass
class _RunState:
    batch_size: int
    tried: list[Mitigation] = field(default_factory=list)
    tiling_enabled_by_us: bool = False
    offloaded: bool = False


def generate(
    pipe: Any,
    request: GenerateRequest,
    *,
    device: Any,
    generator_device: str = "cpu",
    hooks: GenerateHooks | None = None,
    name_prefix: str | None = None,
) -> dict[str, Any]:
    """Generates ``request.batch_count`` images (one per member) with the loaded ``pipe`` (modules
    on ``device``).

    Returns ``{images: [{path, sha256, width, height, format, seed, index, member?}], seed, seeds,
    oomMitigations, timings}`` (``member``: the member's index, with members only; ``seed``: the
    first image's). Raises WorkerError: FAILED_PRECONDITION (model/ControlNet mismatch, field
    named), CANCELLED / DEADLINE_EXCEEDED (within one denoising step), OUT_OF_MEMORY after the plan
    vae_tiling → smaller_batch → model_cpu_offload is exhausted (``details.tried``; a smaller
    batch splits the members, each still its own image). The shared modules are left as found:
    LoRAs unloaded, tiling and offload undone, attention processors restored. Waits for the PNG
    writes; ``generate_deferred`` returns before them.
    """
    return generate_deferred(pipe, request, device=device, generator_device=generator_device, hooks=hooks,
                             name_prefix=name_prefix).result()


def generate_deferred(
    pipe: Any,
    request: GenerateRequest,
    *,
    device: Any,
    generator_device: str = "cpu",
    hooks: GenerateHooks | None = None,
    name_prefix: str | None = None,
) -> Future[dict[str, Any]]:
    """``generate`` whose device work (encode, denoise, decode, the shared modules left as found)
    runs now and whose PNG writes end later: returns, after ``hooks.writing``, a future of
    generate's result, set on a writer thread once the last write ended (a failed write: its
    exception; the bytes are the ones ``generate`` writes). A failure of the device work raises
    here, after every write it started has ended."""
    hooks = hooks or GenerateHooks()
    check_cancel = hooks.raise_if_cancelled or (lambda: None)
    started = hooks.clock()
    check_cancel()
    check_preconditions(pipe, request)
    request = with_lora_hashes(request)
    controlnets = load_controlnets(pipe, request, device, hooks.load_controlnet)
    scheduler = make_scheduler(request.scheduler, pipe.scheduler.config)
    run_pipe = assemble_pipeline(pipe, request.mode, scheduler, controlnets)
    select_unet(run_pipe, pipe)  # the compiled lane's router, when the model has one
    inputs = load_inputs(request)
    prefix = name_prefix or uuid.uuid4().hex[:12]
    state = _RunState(batch_size=request.batch_count)
    # Each image's PNG is encoded and written on the writer pool as soon as it is decoded.
    writes = PngWrites()
    runner = _Runner(run_pipe, request, inputs, hooks, check_cancel, state, device, generator_device, prefix,
                     on_image=lambda index, image: writes.submit(index, lambda: _write(image, request, index, prefix)))
    succeeded = False
    try:
        with applied_loras(run_pipe, request.loras):
            check_cancel()
            # Inside: LoRAs that patch the text encoders change the embeddings.
            runner.run(_encode(run_pipe, request, check_cancel))
        denoised = hooks.clock()
        check_cancel()  # the last check: from here on a cancel changes nothing, the writes finish
        succeeded = True
    finally:
        if not succeeded:
            writes.wait()  # no write of a failed run is still going when its reply leaves
        runner.restore()
        if not succeeded:
            if hooks.defer is not None:
                hooks.defer(lambda: release_memory(hooks.release_memory))
            else:
                release_memory(hooks.release_memory)
    report_recompiles(pipe)
    if hooks.writing is not None:
        hooks.writing(runner.steps_done)

    def result(artifacts: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "images": artifacts,
            "seed": request.seed,
            "seeds": request.seeds(),
            "oomMitigations": list(state.tried),
            "timings": {"generateS": round(denoised - started, 4), "writeS": round(hooks.clock() - denoised, 4)},
        }

    return then(writes.finished(), result)


def _encode(pipe: Any, request: GenerateRequest, check_cancel: Callable[[], None]) -> list[Conditioning]:
    """One conditioning (one row) per image: the members' own, else the request's for each image."""
    if not request.members:
        conditioning = encode_prompts(pipe, request.prompt, request.negative_prompt, clip_skip=request.clip_skip)
        return [conditioning] * request.batch_count
    encoded: dict[tuple[str, str], Conditioning] = {}  # members that share their prompts share the encoding
    for member in request.members:
        key = (member.prompt, member.negative_prompt)
        if key not in encoded:
            check_cancel()
            encoded[key] = encode_prompts(pipe, *key, clip_skip=request.clip_skip)
    return [encoded[(member.prompt, member.negative_prompt)] for member in request.members]


def _write(image: Any, request: GenerateRequest, index: int, prefix: str) -> dict[str, Any]:
    """Image ``index`` as a PNG with its metadata: a member's is that of its solo request."""
    seed = request.seeds()[index]
    name = f"{prefix}-{index:02d}-{seed}.png"
    if not request.members:
        return {**write_image(image, request, seed, index, name), "seed": seed, "index": index}
    # batchIndex 0 in the dops chunk, as in the member's solo run.
    written = write_image(image, request.alone(index), seed, 0, name)
    return {**written, "seed": seed, "index": index, "member": index}


def with_lora_hashes(request: GenerateRequest) -> GenerateRequest:
    """``request`` with each LoRA's file sha256 (cached per file version: one read per LoRA file).
    Raises OSError when a file cannot be read."""
    if not request.loras:
        return request
    loras = tuple(dataclasses.replace(lora, sha256=file_hashes.sha256(lora.path)) for lora in request.loras)
    return dataclasses.replace(request, loras=loras)


def release_memory(release_caches: Callable[[], None] | None = None) -> None:
    """gc, then the backend's cache release (default: torch.cuda.empty_cache when CUDA is up)."""
    gc.collect()
    if release_caches is not None:
        release_caches()
        return
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


class _Runner:
    """Denoise + decode of every image, with the OOM plan around each phase."""

    def __init__(self, pipe: Any, request: GenerateRequest, inputs: dict[str, Any], hooks: GenerateHooks,
                 check_cancel: Callable[[], None], state: _RunState, device: Any, generator_device: str,
                 prefix: str, on_image: Callable[[int, Any], None]) -> None:
        self.pipe = pipe
        self.request = request
        self.inputs = inputs
        self.hooks = hooks
        self.check_cancel = check_cancel
        self.state = state
        self.device = device
        self.generator_device = generator_device
        self.prefix = prefix
        self.on_image = on_image
        self.base = model_traits(pipe).base
        self.steps_done = 0
        self.last_preview = hooks.clock()
        self.conditionings: list[Conditioning] = []

    def run(self, conditionings: list[Conditioning]) -> None:
        """Makes one image per row of ``conditionings``; each one goes to ``on_image(index, image)``
        as soon as its chunk is decoded (nothing here keeps it)."""
        self.conditionings = conditionings
        seeds = self.request.seeds()
        pending = list(range(len(seeds)))
        while pending:
            chunk: list[int] = []

            def denoise() -> Any:
                # Taken per attempt: "smaller_batch" shrinks the chunk of the retry.
                chunk[:] = pending[: self.state.batch_size]
                return self._denoise(chunk, seeds, len(pending))

            latents = self._with_oom_plan("denoise", denoise)
            decoded = self._with_oom_plan("decode", lambda: self._decode_all(latents))
            for index, image in zip(chunk, decoded):
                self.on_image(index, image)
            del latents
            pending = pending[len(chunk):]

    def restore(self) -> None:
        """Undoes what the OOM plan changed on the shared modules; never raises."""
        try:
            if self.state.tiling_enabled_by_us:
                self.pipe.vae.disable_tiling()
            if self.state.offloaded:
                self.pipe.remove_all_hooks()
                for component in self.pipe.components.values():
                    if hasattr(component, "to") and hasattr(component, "parameters"):
                        component.to(self.device)
        except Exception:  # noqa: BLE001 - must not mask the request's outcome
            _log.exception("restoring the pipeline after the OOM plan failed")

    def _with_oom_plan(self, phase: Phase, attempt: Callable[[], Any]) -> Any:
        while True:
            try:
                return attempt()
            except Exception as exc:
                if isinstance(exc, WorkerError) or not is_out_of_memory(exc):
                    raise
                error = f"{type(exc).__name__}: {exc}"
            # Outside the except block, so the traceback (and the tensors its frames hold) is gone.
            release_memory(self.hooks.release_memory)
            mitigation = self._next_mitigation(phase)
            if mitigation is None:
                raise WorkerError(
                    ErrorCode.OUT_OF_MEMORY,
                    f"out of memory in {phase} after trying {', '.join(self.state.tried) or 'nothing'}: {error}",
                    details={"reason": "allocator", "phase": phase, "tried": list(self.state.tried)},
                )
            _log.warning("out of memory; retrying", extra={"phase": phase, "mitigation": mitigation})
            self._apply(mitigation)

    def _next_mitigation(self, phase: Phase) -> Mitigation | None:
        for mitigation in OOM_PLAN:
            if mitigation in self.state.tried:
                continue
            if mitigation == "vae_tiling" and phase != "decode":
                continue  # tiles only the VAE; no help while denoising
            if mitigation == "smaller_batch" and self.state.batch_size <= 1:
                continue
            if mitigation == "model_cpu_offload" and _device_type(self.device) == "cpu":
                continue  # nothing to offload to
            return mitigation
        return None

    def _apply(self, mitigation: Mitigation) -> None:
        self.state.tried.append(mitigation)
        if mitigation == "vae_tiling":
            vae = self.pipe.vae
            if not getattr(vae, "use_tiling", False):
                vae.enable_tiling()
                self.state.tiling_enabled_by_us = True
        elif mitigation == "smaller_batch":
            self.state.batch_size = 1
        else:
            self.pipe.enable_model_cpu_offload(device=self.device)
            self.state.offloaded = True

    def _generators(self, chunk: Sequence[int], seeds: Sequence[int]) -> list[Any]:
        import torch

        # Fresh per attempt: a retry must draw the same noise as the first try.
        return [torch.Generator(device=self.generator_device).manual_seed(seeds[i]) for i in chunk]

    def _denoise(self, chunk: Sequence[int], seeds: Sequence[int], remaining: int) -> Any:
        request = self.request
        chunks_left = -(-remaining // max(1, len(chunk)))
        steps_before = self.steps_done

        def on_step_end(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            per_run = int(getattr(pipe, "num_timesteps", None) or request.steps)
            done = steps_before + step + 1
            preview = None
            if step + 1 < per_run and self._preview_due():
                preview = self._preview(kwargs.get("latents"), done)
            if self.hooks.progress is not None:
                self.hooks.progress(done, steps_before + per_run * chunks_left, preview)
            self.check_cancel()
            return kwargs

        self.check_cancel()
        # One row per image of the chunk; the same rows for a plain batch as num_images_per_prompt
        # would make, so both paths are one.
        conditioning = batch_conditioning([self.conditionings[i] for i in chunk])
        arguments: dict[str, Any] = {
            **conditioning.pipeline_arguments(),
            "num_inference_steps": request.steps,
            "guidance_scale": request.cfg_scale,
            "num_images_per_prompt": 1,
            "generator": self._generators(chunk, seeds),
            "output_type": "latent",
            "callback_on_step_end": on_step_end,
            "callback_on_step_end_tensor_inputs": ["latents"],
        }
        if request.mode in ("txt2img", "inpaint"):
            arguments.update(width=request.width, height=request.height)
        if request.mode != "txt2img":
            arguments.update(image=[self.inputs["init_images"][i] for i in chunk], strength=request.strength)
        if request.mode == "inpaint":
            arguments["mask_image"] = [self.inputs["masks"][i] for i in chunk]
        if request.controlnets:
            controls = self.inputs["controls"]
            scales = [spec.conditioning_scale for spec in request.controlnets]
            key = "image" if request.mode == "txt2img" else "control_image"
            arguments[key] = controls[0] if len(controls) == 1 else controls
            arguments["controlnet_conditioning_scale"] = scales[0] if len(scales) == 1 else scales
        with masked_padding(self.pipe, conditioning.token_lengths):
            latents = self.pipe(**arguments).images
        self.steps_done = steps_before + int(getattr(self.pipe, "num_timesteps", request.steps) or request.steps)
        return latents

    def _decode_all(self, latents: Any) -> list[Any]:
        self.check_cancel()
        if self.state.batch_size >= latents.shape[0]:
            return self._decode(latents)
        images = []
        for i in range(latents.shape[0]):
            images.extend(self._decode(latents[i : i + 1]))
        return images

    def _decode(self, latents: Any) -> list[Any]:
        """The pipelines' own decode (scale, SDXL mean/std), fp16 first where the VAE allows (decode.py)."""
        return decode_latents(self.pipe, latents, self.base)

    def _preview_due(self) -> bool:
        now = self.hooks.clock()
        if now - self.last_preview < self.request.preview_interval_s:
            return False
        self.last_preview = now
        return True

    def _preview(self, latents: Any, step: int) -> dict[str, Any] | None:
        """A small PNG of the first image from a linear latent → RGB map; None when the latent
        layout is unknown or writing fails (a preview is never worth failing the request)."""
        if latents is None or latents.shape[1] != 4:
            return None
        try:
            import torch
            from PIL import Image

            factors, bias = _LATENT_RGB[self.base]
            with torch.no_grad():
                sample = latents[0].detach().to("cpu", torch.float32)
                rgb = torch.einsum("chw,cr->hwr", sample, torch.tensor(factors)) + torch.tensor(bias)
                pixels = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
            image = Image.fromarray(pixels, "RGB")
            written = write_png(image, self.request.output_dir, f"{self.prefix}-preview.png", {})
            return {"path": written["path"], "width": written["width"], "height": written["height"], "step": step}
        except Exception:  # noqa: BLE001
            _log.exception("writing a preview failed")
            return None


def _device_type(device: Any) -> str:
    return str(device).split(":", 1)[0]
