"""Scheduler names users know (A1111/ComfyUI) → a fresh diffusers scheduler from a model's config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dops_worker.protocol.errors import ErrorCode, WorkerError

# name → (diffusers class name, config overrides). Every flag that another entry sets is set
# explicitly here, so switching from a Karras config to a plain one really switches.
SCHEDULERS: Mapping[str, tuple[str, dict[str, Any]]] = {
    "Euler": ("EulerDiscreteScheduler", {"use_karras_sigmas": False}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler",
                 {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": False}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler",
                        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}),
    # SD configs leave clip_sample unset; DDIM would then default to clipping, which SD never does.
    "DDIM": ("DDIMScheduler", {"clip_sample": False, "set_alpha_to_one": False}),
    "UniPC": ("UniPCMultistepScheduler", {"use_karras_sigmas": False}),
    "LCM": ("LCMScheduler", {}),
}


def scheduler_names() -> list[str]:
    return list(SCHEDULERS)


def make_scheduler(name: str, base_config: Mapping[str, Any]) -> Any:
    """A new scheduler (never the model's shared one: schedulers keep per-run state).

    ``base_config`` is the loaded model's scheduler config (betas, timestep spacing, prediction
    type); raises WorkerError INVALID_ARGUMENT (field ``scheduler``) for an unknown name.
    """
    if name not in SCHEDULERS:
        raise WorkerError(ErrorCode.INVALID_ARGUMENT, f"unknown scheduler {name!r}",
                          details={"field": "scheduler", "reason": f"must be one of {', '.join(SCHEDULERS)}"})
    import diffusers

    class_name, overrides = SCHEDULERS[name]
    scheduler_class = getattr(diffusers, class_name)
    return scheduler_class.from_config(dict(base_config), **overrides)
