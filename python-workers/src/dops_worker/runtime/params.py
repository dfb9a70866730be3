"""Validate request params at the edge; every failure names the field (JSON-RPC -32602)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dops_worker.protocol.errors import InvalidParams

META_KEY = "_meta"
# Fields that once travelled in requests but are the operator's decision: a request that still
# carries one is refused (not ignored), so a caller relying on it learns at once that it does nothing.
NODE_SETTING_FIELDS = {
    "allowUnsafePickle": "DOPS_ALLOW_UNSAFE_PICKLE",
    "allow_unsafe_pickle": "DOPS_ALLOW_UNSAFE_PICKLE",
}


def refuse_node_settings(params: Any) -> None:
    """Raises InvalidParams naming the first node-setting field found in ``params``."""
    if isinstance(params, dict):
        for name, setting in NODE_SETTING_FIELDS.items():
            if name in params:
                raise InvalidParams(name, f"is a node setting ({setting}), not a request field")


def require_object(params: Any, allowed: Iterable[str] = ()) -> dict[str, Any]:
    """``params`` as a dict; raises InvalidParams for a non-object or a key not in ``allowed``."""
    if not isinstance(params, dict):
        raise InvalidParams("params", "must be an object")
    refuse_node_settings(params)
    known = set(allowed) | {META_KEY}
    for key in params:
        if key not in known:
            raise InvalidParams(key, "unknown field")
    return params


def get_int(params: dict[str, Any], name: str, *, minimum: int, maximum: int,
            default: int | None = None, required: bool = False) -> int | None:
    """An integer in [minimum, maximum]; ``default`` when absent and not required."""
    if name not in params or params[name] is None:
        if required:
            raise InvalidParams(name, "is required")
        return default
    value = params[name]
    # JSON has one number type: 3.0 is fine as an int, 3.5 and true are not.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise InvalidParams(name, "must be an integer")
    value = int(value)
    if not minimum <= value <= maximum:
        raise InvalidParams(name, f"must be between {minimum} and {maximum}")
    return value


def get_enum(params: dict[str, Any], name: str, choices: Iterable[str], default: str | None = None) -> str | None:
    """One of ``choices``; ``default`` when absent."""
    if name not in params or params[name] is None:
        return default
    value = params[name]
    options = tuple(choices)
    if value not in options:
        raise InvalidParams(name, f"must be one of {', '.join(options)}")
    return value


def parse_meta(params: Any) -> tuple[str | None, float | None]:
    """``(traceparent, deadline_seconds)`` from ``params._meta``; deadline arrives as epoch ms."""
    if not isinstance(params, dict) or params.get(META_KEY) is None:
        return None, None
    meta = params[META_KEY]
    if not isinstance(meta, dict):
        raise InvalidParams(META_KEY, "must be an object")
    traceparent = meta.get("traceparent")
    if traceparent is not None and not isinstance(traceparent, str):
        raise InvalidParams(f"{META_KEY}.traceparent", "must be a string")
    deadline = meta.get("deadline")
    if deadline is not None and (isinstance(deadline, bool) or not isinstance(deadline, (int, float))):
        raise InvalidParams(f"{META_KEY}.deadline", "must be a number (Unix epoch milliseconds)")
    return traceparent, (deadline / 1000.0 if deadline is not None else None)
