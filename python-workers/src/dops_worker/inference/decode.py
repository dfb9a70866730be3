"""Latents → PIL images: the pipelines' own VAE decode, faster where it can be.

- **fp16 decode first.** SDXL's VAE config says ``force_upcast`` (its original weights overflow
  fp16), so the pipelines convert the VAE to fp32 for every decode and back. Fixed fp16 VAEs,
  and most fine-tunes, decode fine in fp16 at about half the time. So an fp16 VAE decodes in fp16
  first; a result with a NaN or an infinity is thrown away and the decode runs again the
  pipelines' way (upcast to fp32), and that VAE is remembered as needing it (no second try).
- **Pixels made on the device.** The pipelines' ``postprocess(output_type="pil")`` moves float
  images to the CPU and scales and rounds them there with numpy; here the same arithmetic (fp32
  ``x * 255``, round half to even, then uint8) runs on the device and only bytes cross: the same
  pixels, a quarter of the transfer and no CPU float pass.
- **Compiled where warmed up.** With a compiled lane (compiled.py), ``vae.decode`` goes through
  the VAE's ``DecodeRouter``: compiled for the latents' shape and dtype of a warm-up (the fp16
  decode of a compile shape), eager otherwise (the fp32 retry, other sizes, tiling).
"""

from __future__ import annotations

import logging
from typing import Any

from dops_worker.inference.compiled import decode_fn

_log = logging.getLogger("dops_worker.inference.decode")

# Set on a VAE module whose fp16 decode gave non-finite values: it is upcast from then on.
FP16_FAILED_ATTR = "_dops_fp16_decode_failed"


def decode_latents(pipe: Any, latents: Any, base: str) -> list[Any]:
    """The images of ``latents`` (scaled as the pipeline returns them with ``output_type="latent"``)
    as PIL images, without the safety checker. The VAE is left in the dtype it had."""
    import torch

    vae = pipe.vae
    config = vae.config
    needs_upcasting = base == "sdxl" and vae.dtype == torch.float16 and config.get("force_upcast", False)
    if needs_upcasting and not getattr(vae, FP16_FAILED_ATTR, False):
        decoded = _decode(vae, latents)
        if bool(torch.isfinite(decoded).all()):
            return to_pil(pipe, decoded)
        _log.warning("fp16 VAE decode gave non-finite values; decoding in fp32 from now on",
                     extra={"vae": type(vae).__name__})
        setattr(vae, FP16_FAILED_ATTR, True)
        del decoded
    if needs_upcasting:
        vae.to(dtype=torch.float32)
    try:
        return to_pil(pipe, _decode(vae, latents))
    finally:
        if needs_upcasting:
            vae.to(dtype=torch.float16)


def _decode(vae: Any, latents: Any) -> Any:
    """Unscale (SDXL's latents_mean/std when the config has them) and decode in the VAE's dtype."""
    import torch

    config = vae.config
    latents = latents.to(dtype=vae.dtype)
    mean, std = config.get("latents_mean"), config.get("latents_std")
    if mean is not None and std is not None:
        channels = latents.shape[1]
        mean_t = torch.tensor(mean).view(1, channels, 1, 1).to(latents.device, latents.dtype)
        std_t = torch.tensor(std).view(1, channels, 1, 1).to(latents.device, latents.dtype)
        latents = latents * std_t / config.scaling_factor + mean_t
    else:
        latents = latents / config.scaling_factor
    with torch.no_grad():
        return decode_fn(vae)(latents, return_dict=False)[0]


def to_pil(pipe: Any, decoded: Any) -> list[Any]:
    """``pipe.image_processor.postprocess(decoded, output_type="pil")``, pixel for pixel, with the
    float → uint8 step on ``decoded``'s device."""
    import torch
    from PIL import Image

    with torch.no_grad():
        images = pipe.image_processor.postprocess(decoded, output_type="pt")  # denormalised, its dtype
        pixels = (images.permute(0, 2, 3, 1).float() * 255).round().to(torch.uint8).cpu().numpy()
    if pixels.shape[-1] == 1:
        return [Image.fromarray(image.squeeze(-1), mode="L") for image in pixels]
    return [Image.fromarray(image) for image in pixels]
