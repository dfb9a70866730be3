"""The compiled lane's UNet warm-up call: one short txt2img run per compile shape, through the
same pipeline class and the same UNet call a request makes (compiled.UnetRouter records its
inputs). The VAE decode's warm-up is compiled.py's own: one decode of random latents of each
shape's size, in the VAE's dtype, as decode.py calls it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dops_worker.inference.compiled import CompileShape, UnetRouter
from dops_worker.inference.pipelines import assemble_pipeline
from dops_worker.inference.schedulers import make_scheduler

WARM_UP_STEPS = 2
# Any CFG above 1 runs the UNet on the doubled batch that requests with CFG run on.
WARM_UP_CFG = 5.0


def pipeline_warm_up(pipe: Any) -> Callable[[UnetRouter, CompileShape], None]:
    """``warm_up(router, shape)`` for ``prepare_compiled_lane``: ``shape.batch`` images of
    ``shape.width``×``shape.height`` from a short prompt (77 tokens, as most prompts), latents only."""

    def warm_up(router: UnetRouter, shape: CompileShape) -> None:
        import torch

        run = assemble_pipeline(pipe, "txt2img", make_scheduler("Euler", pipe.scheduler.config))
        object.__setattr__(run, "unet", router)
        with torch.no_grad():
            run(prompt=["warm-up"] * shape.batch, negative_prompt=[""] * shape.batch,
                num_inference_steps=WARM_UP_STEPS, guidance_scale=WARM_UP_CFG, width=shape.width,
                height=shape.height, output_type="latent",
                generator=[torch.Generator(device="cpu").manual_seed(i) for i in range(shape.batch)])

    return warm_up
