"""Method registry: ``@method("memory.stats")`` binds a handler to a JSON-RPC method name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dops_worker.runtime.context import RequestContext

Handler = Callable[[Any, "RequestContext"], Any]


@dataclass(frozen=True)
class MethodSpec:
    """``inline`` handlers run on the reader (control) thread and must be quick and GPU-free;
    ``requires_init`` ones are refused with FAILED_PRECONDITION before ``initialize`` succeeded;
    accepting a ``drains`` request (worker.shutdown) refuses every later one with UNAVAILABLE."""

    name: str
    handler: Handler
    inline: bool = False
    requires_init: bool = True
    drains: bool = False


class MethodRegistry:
    def __init__(self) -> None:
        self._methods: dict[str, MethodSpec] = {}

    def method(
        self, name: str, *, inline: bool = False, requires_init: bool = True, drains: bool = False
    ) -> Callable[[Handler], Handler]:
        """Decorator; raises ValueError when ``name`` is already registered."""

        def register(handler: Handler) -> Handler:
            if name in self._methods:
                raise ValueError(f"method {name!r} is already registered")
            self._methods[name] = MethodSpec(name, handler, inline, requires_init, drains)
            return handler

        return register

    def get(self, name: str) -> MethodSpec | None:
        return self._methods.get(name)

    def names(self) -> list[str]:
        return sorted(self._methods)


# The worker's methods register here (dops_worker.runtime.methods).
registry = MethodRegistry()
method = registry.method
