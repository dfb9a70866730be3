"""Image generation: request validation, pipeline assembly, LoRA, schedulers, run, artifacts.

Entry points: ``request.parse_generate_request`` then ``generate.generate``; ``methods`` binds
``inference.generate`` and ``inference.capabilities`` to the worker's registry.
"""
