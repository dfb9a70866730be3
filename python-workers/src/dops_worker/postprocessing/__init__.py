"""Postprocessing of finished images: upscale (spandrel, tiled), face restoration (spandrel),
safety check (diffusers' CLIP-based StableDiffusionSafetyChecker) and format conversion.

Entry points: ``request.parse_postprocess_request`` then ``operations.run``; ``methods`` binds
``postprocess.run`` to the worker's registry. Images are files: read from the input root or the
artifact root (a workflow stage reads the previous stage's output), written to the artifact root,
each with its input's metadata and what the stage did appended (``metadata``).
"""
