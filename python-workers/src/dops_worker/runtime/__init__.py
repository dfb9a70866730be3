"""The worker process: stdio guard, logging, server loop, cancellation, lifecycle, methods."""
