"""``inference.generate`` params → a typed, validated GenerateRequest, before any work is done.

``params`` is the proto3 JSON form of ``dops.worker.v1.GenerateParams`` (proto/dops/worker/v1/
worker.proto; tests/protocol/test_worker_contract.py keeps the two in step): a field without
presence that holds its default ("" / 0 / false / [] / {}) or ``null`` is the same as an absent
one, integers may be decimal strings (``seed`` is a uint64), and an absent ``optional`` field takes
the worker's default below. Every failure is a WorkerError naming the field in ``details.field``
(camelCase, as on the wire; list items as ``loras[1].weight``). Images are files in the input
roots referenced by path, never inline; only their headers are read here. LoRA and ControlNet
paths must lie in the model roots; every path goes through ``protocol.files.confined``.

``members`` (a dynamic batch) moves prompt, negativePrompt, seed, initImage and mask into one
GenerateMember per image; each is checked as its top-level field would be (``members[2].seed``),
the top-level ones must then be unset and batchCount 0 or 1, and there are at most
``max_batch_count`` members. ``GenerateRequest.alone(i)`` is member i as a request of its own.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dops_worker.models.weights import require_safetensors_folder
from dops_worker.protocol.errors import ErrorCode
from dops_worker.protocol.files import ImageRef, Roots, confined, invalid, read_image_header
from dops_worker.protocol.proto_json import integer, number, without_defaults
from dops_worker.runtime.params import META_KEY

Mode = Literal["txt2img", "img2img", "inpaint"]
MODES: tuple[Mode, ...] = ("txt2img", "img2img", "inpaint")
# Names as A1111/ComfyUI users know them; schedulers.py maps each to a diffusers class + flags.
SCHEDULER_NAMES: tuple[str, ...] = ("Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "DDIM", "UniPC", "LCM")
UINT64_MAX = 2**64 - 1
_RANDOM_SEED_BITS = 32  # a random seed fits in 32 bits so every UI can type it back in

# The json names of GenerateParams, GenerateMember, LoraParams and ControlNetParams.
FIELDS = frozenset({
    "mode", "model", "modelHashes", "prompt", "negativePrompt", "width", "height", "steps",
    "cfgScale", "seed", "batchCount", "scheduler", "strength", "initImage", "mask", "loras",
    "controlnets", "outputDir", "previewIntervalS", "allowInpaintFallback", "clipSkip", "members",
})
MEMBER_FIELDS = frozenset({"prompt", "negativePrompt", "seed", "initImage", "mask"})
LORA_FIELDS = frozenset({"path", "weight"})
CONTROLNET_FIELDS = frozenset({"path", "image", "conditioningScale"})
# Fields without presence (not `optional` in the proto) and their proto3 defaults: holding the
# default, they are absent. The `optional` ones are absent only when left out (or null).
_NO_PRESENCE_DEFAULTS: dict[str, object] = {
    "model": "", "mode": "", "modelHashes": {}, "prompt": "", "negativePrompt": "", "batchCount": 0,
    "scheduler": "", "initImage": "", "mask": "", "loras": [], "controlnets": [], "outputDir": "",
    "allowInpaintFallback": False, "members": [],
}
_MEMBER_DEFAULTS: dict[str, object] = {"prompt": "", "negativePrompt": "", "initImage": "", "mask": ""}
_LORA_DEFAULTS: dict[str, object] = {"path": ""}
_CONTROLNET_DEFAULTS: dict[str, object] = {"path": "", "image": ""}
MAX_PROMPT_CHARS = 20_000
MAX_CLIP_SKIP = 12


@dataclass(frozen=True)
class RequestLimits:
    """What one model accepts; ``limits_for_pipeline`` (pipelines.py) derives it from a model.

    Prompts have no token limit (conditioning.py encodes any length in 75-token chunks), only
    ``max_prompt_chars``. ``max_clip_skip`` is the deepest clip skip the model's text encoders have.
    """

    min_size: int = 64
    max_size: int = 2048
    size_multiple: int = 8
    max_steps: int = 150
    max_cfg_scale: float = 30.0
    max_batch_count: int = 8
    max_loras: int = 8
    max_controlnets: int = 4
    max_prompt_chars: int = MAX_PROMPT_CHARS
    max_clip_skip: int = MAX_CLIP_SKIP


@dataclass(frozen=True)
class LoraSpec:
    path: Path
    weight: float
    # The file's hex sha256, filled in by generate before the run (for the image's metadata).
    sha256: str = ""


@dataclass(frozen=True)
class ControlNetSpec:
    path: Path
    image: Path
    conditioning_scale: float


@dataclass(frozen=True)
class GenerateMember:
    """One request of a dynamic batch: the fields in which the members differ."""

    prompt: str
    negative_prompt: str
    seed: int
    seed_was_random: bool
    init_image: ImageRef | None = None
    mask: ImageRef | None = None


@dataclass(frozen=True)
class GenerateRequest:
    mode: Mode
    model: str
    prompt: str
    negative_prompt: str
    width: int
    height: int
    steps: int
    cfg_scale: float
    seed: int
    seed_was_random: bool
    batch_count: int
    scheduler: str
    strength: float
    init_image: ImageRef | None
    mask: ImageRef | None
    loras: tuple[LoraSpec, ...]
    controlnets: tuple[ControlNetSpec, ...]
    output_dir: Path
    preview_interval_s: float
    allow_inpaint_fallback: bool
    model_hashes: Mapping[str, str] = field(default_factory=dict)
    clip_skip: int = 1
    # A1111's "Model:": the loaded file's stem (set by the method from model.load), else the id.
    model_name: str = ""
    # A dynamic batch, one image each. Then prompt, negative_prompt, init_image and mask above
    # are empty, seed / seed_was_random are the first member's and batch_count is their number.
    members: tuple[GenerateMember, ...] = ()

    def seeds(self) -> list[int]:
        """One seed per image: the members' seeds, else seed, seed+1, ... (A1111's convention),
        wrapping at 2**64."""
        if self.members:
            return [member.seed for member in self.members]
        return [(self.seed + i) % (UINT64_MAX + 1) for i in range(self.batch_count)]

    def alone(self, index: int) -> GenerateRequest:
        """Member ``index`` as the one-image request it would be on its own (its image's
        metadata, its solo run). Raises IndexError without such a member."""
        member = self.members[index]
        return dataclasses.replace(
            self, prompt=member.prompt, negative_prompt=member.negative_prompt, seed=member.seed,
            seed_was_random=member.seed_was_random, batch_count=1, init_image=member.init_image,
            mask=member.mask, members=(),
        )

    def to_json(self) -> dict[str, Any]:
        """Every parameter as on the wire (paths as strings), for the PNG ``dops`` chunk."""
        return {
            "mode": self.mode, "model": self.model, "modelHashes": dict(self.model_hashes),
            "prompt": self.prompt, "negativePrompt": self.negative_prompt,
            "width": self.width, "height": self.height, "steps": self.steps, "cfgScale": self.cfg_scale,
            "seed": self.seed, "seedWasRandom": self.seed_was_random, "batchCount": self.batch_count,
            "scheduler": self.scheduler,
            "strength": self.strength if self.mode != "txt2img" else None,
            "initImage": str(self.init_image.path) if self.init_image else None,
            "mask": str(self.mask.path) if self.mask else None,
            "clipSkip": self.clip_skip,
            "loras": [{"path": str(l.path), "weight": l.weight, "sha256": l.sha256 or None} for l in self.loras],
            "controlnets": [
                {"path": str(c.path), "image": str(c.image), "conditioningScale": c.conditioning_scale}
                for c in self.controlnets
            ],
        }


def parse_generate_request(
    params: Any,
    *,
    limits: RequestLimits,
    input_roots: Roots,
    artifact_roots: Roots,
    model_roots: Roots,
    random_seed: Callable[[], int] | None = None,
) -> GenerateRequest:
    """Validates ``params`` (GenerateParams' proto3 JSON); raises WorkerError INVALID_ARGUMENT
    (NOT_FOUND for a missing file) with ``details.field``. Reads image headers only. An absent
    ``seed`` (a member's too) draws a random 32-bit one; absent ``mode`` is txt2img, ``scheduler``
    "Euler a", ``batchCount`` 1, ``clipSkip`` 1, ``prompt`` and ``negativePrompt`` empty."""
    if not isinstance(params, dict):
        raise invalid("params", "must be an object")
    for key in params:
        if key not in FIELDS and key != META_KEY:
            raise invalid(key, "unknown field")
    params = without_defaults(params, _NO_PRESENCE_DEFAULTS)

    mode = params.get("mode", "txt2img")
    if mode not in MODES:
        raise invalid("mode", f"must be one of {', '.join(MODES)}")
    model = _string(params, "model", required=True)
    if not model:
        raise invalid("model", "must not be empty")
    model_hashes = params.get("modelHashes") or {}
    if not isinstance(model_hashes, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in model_hashes.items()
    ):
        raise invalid("modelHashes", "must be an object of strings")

    with_members = params.get("members") is not None
    if with_members:
        for name in ("prompt", "negativePrompt", "seed", "initImage", "mask"):
            if params.get(name) is not None:
                raise invalid(name, "must be unset when members is set (each member has its own)")
        if integer(params.get("batchCount", 1), "batchCount") != 1:
            raise invalid("batchCount", "must be 0 or 1 when members is set (one image per member)")
    prompt, negative_prompt = _prompts(params, limits)

    width = _size(params, "width", limits)
    height = _size(params, "height", limits)
    steps = _int(params, "steps", 1, limits.max_steps, default=20)
    cfg_scale = _number(params, "cfgScale", 0.0, limits.max_cfg_scale, default=7.0)
    seed, seed_was_random = (0, False) if with_members else _seed(params, random_seed)
    batch_count = _int(params, "batchCount", 1, limits.max_batch_count, default=1)
    scheduler = params.get("scheduler", "Euler a")
    if scheduler not in SCHEDULER_NAMES:
        raise invalid("scheduler", f"must be one of {', '.join(SCHEDULER_NAMES)}")
    preview_interval_s = _number(params, "previewIntervalS", 0.0, 3600.0, default=0.5)
    clip_skip = _int(params, "clipSkip", 1, MAX_CLIP_SKIP, default=1)
    if clip_skip > limits.max_clip_skip:
        raise invalid("clipSkip", f"this model's text encoder has no layer that deep: at most {limits.max_clip_skip}")
    allow_fallback = params.get("allowInpaintFallback", False)
    if not isinstance(allow_fallback, bool):
        raise invalid("allowInpaintFallback", "must be a boolean")

    strength = 1.0
    init_image = mask = None
    if mode == "txt2img":
        _check_no_images(params)
        if params.get("strength") is not None:
            raise invalid("strength", "is only allowed with mode img2img or inpaint")
    else:
        strength = _number(params, "strength", 0.0, 1.0, default=0.75 if mode == "img2img" else 1.0)
        # diffusers runs int(steps * strength) steps and fails on zero.
        if int(steps * strength) < 1:
            raise invalid("strength", f"strength {strength} × steps {steps} leaves no denoising step")
        if not with_members:
            init_image, mask = _images(params, mode, input_roots)
    members: tuple[GenerateMember, ...] = ()
    if with_members:
        members = _members(params.get("members"), mode, limits, input_roots, random_seed)
        seed, seed_was_random, batch_count = members[0].seed, members[0].seed_was_random, len(members)

    loras = tuple(_loras(params.get("loras"), limits, model_roots))
    controlnets = tuple(_controlnets(params.get("controlnets"), limits, input_roots, model_roots))
    output_dir = confined(_string(params, "outputDir", required=True), artifact_roots, "outputDir")

    return GenerateRequest(
        mode=mode, model=model, prompt=prompt, negative_prompt=negative_prompt,
        width=width, height=height, steps=steps, cfg_scale=cfg_scale, seed=seed,
        seed_was_random=seed_was_random, batch_count=batch_count, scheduler=scheduler,
        strength=strength, init_image=init_image, mask=mask, loras=loras, controlnets=controlnets,
        output_dir=output_dir, preview_interval_s=preview_interval_s,
        allow_inpaint_fallback=allow_fallback, model_hashes=dict(model_hashes), clip_skip=clip_skip,
        members=members,
    )


def _prompts(item: dict[str, Any], limits: RequestLimits, prefix: str = "") -> tuple[str, str]:
    """``prompt`` and ``negativePrompt`` of GenerateParams or of a member (``prefix`` "members[i].")."""
    texts = []
    for name in ("prompt", "negativePrompt"):
        text = _string(item, name, label=prefix + name)
        if len(text) > limits.max_prompt_chars:
            raise invalid(prefix + name, f"has {len(text)} characters; at most {limits.max_prompt_chars} are allowed")
        texts.append(text)
    return texts[0], texts[1]


def _seed(item: dict[str, Any], random_seed: Callable[[], int] | None, prefix: str = "") -> tuple[int, bool]:
    """``(seed, was_random)``: the uint64 ``seed``, or a random 32-bit one when it is absent."""
    if item.get("seed") is None:
        return (random_seed() if random_seed else secrets.randbits(_RANDOM_SEED_BITS)), True
    return _int(item, "seed", 0, UINT64_MAX, label=prefix + "seed"), False


def _check_no_images(item: dict[str, Any], prefix: str = "") -> None:
    for name in ("initImage", "mask"):
        if item.get(name) is not None:
            raise invalid(prefix + name, "is only allowed with mode img2img or inpaint")


def _images(item: dict[str, Any], mode: Mode, roots: Roots, prefix: str = "") -> tuple[ImageRef, ImageRef | None]:
    """img2img / inpaint: ``initImage`` (required) and ``mask`` (inpaint: required, the same size)."""
    init_image = _image(item, "initImage", roots, label=prefix + "initImage")
    if mode != "inpaint":
        if item.get("mask") is not None:
            raise invalid(prefix + "mask", "is only allowed with mode inpaint")
        return init_image, None
    mask = _image(item, "mask", roots, label=prefix + "mask")
    if (mask.width, mask.height) != (init_image.width, init_image.height):
        raise invalid(prefix + "mask", f"is {mask.width}x{mask.height} but {prefix}initImage is "
                                       f"{init_image.width}x{init_image.height}")
    return init_image, mask


def _members(value: Any, mode: Mode, limits: RequestLimits, input_roots: Roots,
             random_seed: Callable[[], int] | None) -> tuple[GenerateMember, ...]:
    members: list[GenerateMember] = []
    for i, item in enumerate(_list(value, "members", limits.max_batch_count)):
        prefix = f"members[{i}]."
        item = _item(item, f"members[{i}]", MEMBER_FIELDS, _MEMBER_DEFAULTS)
        prompt, negative_prompt = _prompts(item, limits, prefix)
        seed, seed_was_random = _seed(item, random_seed, prefix)
        init_image = mask = None
        if mode == "txt2img":
            _check_no_images(item, prefix)
        else:
            init_image, mask = _images(item, mode, input_roots, prefix)
            first = members[0].init_image if members else None
            # One batch, one image size (the pipelines stack them); the proto says so.
            if first is not None and (init_image.width, init_image.height) != (first.width, first.height):
                raise invalid(prefix + "initImage", f"is {init_image.width}x{init_image.height} but "
                                                    f"members[0].initImage is {first.width}x{first.height}")
        members.append(GenerateMember(prompt, negative_prompt, seed, seed_was_random, init_image, mask))
    return tuple(members)


def _string(params: dict[str, Any], name: str, *, required: bool = False, label: str | None = None) -> str:
    label = label or name
    value = params.get(name)
    if value is None:
        if required:
            raise invalid(label, "is required")
        return ""
    if not isinstance(value, str):
        raise invalid(label, "must be a string")
    return value


def _int(params: dict[str, Any], name: str, minimum: int, maximum: int, default: int | None = None,
         label: str | None = None) -> int:
    label = label or name
    value = params.get(name, default)
    if value is None:
        raise invalid(label, "is required")
    value = integer(value, label)
    if not minimum <= value <= maximum:
        raise invalid(label, f"must be between {minimum} and {maximum}")
    return value


def _number(params: Any, name: str, minimum: float, maximum: float, default: float | None = None,
            label: str | None = None) -> float:
    label = label or name
    value = params.get(name, default)
    if value is None:
        raise invalid(label, "is required")
    value = number(value, label)
    if not minimum <= value <= maximum:
        raise invalid(label, f"must be between {minimum:g} and {maximum:g}")
    return value


def _size(params: dict[str, Any], name: str, limits: RequestLimits) -> int:
    value = _int(params, name, limits.min_size, limits.max_size, default=512)
    if value % limits.size_multiple:
        raise invalid(name, f"must be a multiple of {limits.size_multiple}")
    return value


def _image(params: dict[str, Any], name: str, roots: Roots, *, label: str | None = None) -> ImageRef:
    return read_image_header(params.get(name), label or name, roots)


def _list(value: Any, name: str, maximum: int) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise invalid(name, "must be a list")
    if len(value) > maximum:
        raise invalid(name, f"at most {maximum} are allowed")
    return value


def _item(item: Any, name: str, fields: frozenset[str], defaults: dict[str, object]) -> dict[str, Any]:
    """One message of a repeated field, less its default-valued fields; ``name.key: unknown field``
    for a key the message lacks."""
    if not isinstance(item, dict):
        raise invalid(name, f"must be an object {{{', '.join(sorted(fields))}}}")
    for key in item:
        if key not in fields:
            raise invalid(f"{name}.{key}", "unknown field")
    return without_defaults(item, defaults)


def _model_file(item: dict[str, Any], name: str, roots: Roots) -> Path:
    """A ``.safetensors`` file or a safetensors-only diffusers folder in the model roots."""
    raw = item.get("path")
    if not isinstance(raw, str) or not raw:
        raise invalid(name, "must be a path (string)")
    path = confined(raw, roots, name)
    if not path.exists():
        raise invalid(name, f"no such file: {raw}", ErrorCode.NOT_FOUND)
    if path.is_dir():
        require_safetensors_folder(path, roots, name)
    elif path.suffix.lower() != ".safetensors":
        # .ckpt/.pt/.bin are pickles: arbitrary code on load. Single files here are safetensors
        # whatever the node's pickle setting: diffusers would read a pickle with its own torch.load.
        raise invalid(name, "must be a .safetensors file or a diffusers folder")
    return path


def _loras(value: Any, limits: RequestLimits, model_roots: Roots) -> list[LoraSpec]:
    specs = []
    for i, item in enumerate(_list(value, "loras", limits.max_loras)):
        item = _item(item, f"loras[{i}]", LORA_FIELDS, _LORA_DEFAULTS)
        path = _model_file(item, f"loras[{i}].path", model_roots)
        if not path.is_file():
            raise invalid(f"loras[{i}].path", "must be a .safetensors file")
        weight = _number(item, "weight", -10.0, 10.0, default=1.0, label=f"loras[{i}].weight")
        specs.append(LoraSpec(path, weight))
    return specs


def _controlnets(value: Any, limits: RequestLimits, input_roots: Roots, model_roots: Roots) -> list[ControlNetSpec]:
    specs = []
    for i, item in enumerate(_list(value, "controlnets", limits.max_controlnets)):
        item = _item(item, f"controlnets[{i}]", CONTROLNET_FIELDS, _CONTROLNET_DEFAULTS)
        path = _model_file(item, f"controlnets[{i}].path", model_roots)
        image = _image(item, "image", input_roots, label=f"controlnets[{i}].image")
        scale = _number(item, "conditioningScale", 0.0, 2.0, default=1.0, label=f"controlnets[{i}].conditioningScale")
        specs.append(ControlNetSpec(path, image.path, scale))
    return specs
