"""Image generation: request validation, pipeline assembly, prompt encoding (A1111 syntax through
compel, any length, clip skip), LoRA, schedulers, run, artifacts.

Entry points: ``request.parse_generate_request`` then ``generate.generate``; ``methods`` binds
``inference.generate`` and ``inference.capabilities`` to the worker's registry.
"""
