"""Reading request params that are the proto3 JSON form of a message (proto/dops/worker/v1).

proto3 JSON has rules a plain ``json.loads`` reader misses: a field without presence that holds
its default value ("" / 0 / false / [] / {}) means the same as an absent one, and so does
``null``; integers may arrive as JSON numbers or as decimal strings (64-bit ones always come as
strings from a protobuf library, since JSON numbers lose precision past 2**53); doubles may
arrive as strings too. Failures are ``invalid`` errors naming the wire field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from dops_worker.protocol.files import invalid

# A JSON number as text ("1", "-2.5", "3e8"); Python's float() also takes "1_0" and " 1 ".
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_JSON_INTEGER = re.compile(r"-?(?:0|[1-9]\d*)")


def without_defaults(params: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` less its ``null`` values and the fields of ``defaults`` (those without presence,
    by wire name) that hold their default value, so that what is left was really set."""
    return {
        key: value for key, value in params.items()
        if value is not None and not (key in defaults and _is_default(value, defaults[key]))
    }


def _is_default(value: Any, default: Any) -> bool:
    if isinstance(default, bool):
        return value is False
    if isinstance(default, int):
        return not isinstance(value, bool) and value in (0, "0")
    return type(value) is type(default) and value == default


def integer(value: Any, field: str) -> int:
    """An integral JSON number (3 and 3.0 alike) or a decimal string; raises ``invalid(field)``
    ("must be an integer") for anything else, booleans included."""
    if isinstance(value, str) and _JSON_INTEGER.fullmatch(value):
        return int(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid(field, "must be an integer")
    if isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()):
        raise invalid(field, "must be an integer")
    return int(value)


def number(value: Any, field: str) -> float:
    """A finite JSON number or a string holding one; raises ``invalid(field)`` ("must be a
    number") for anything else, NaN and the infinities included."""
    if isinstance(value, str) and _JSON_NUMBER.fullmatch(value):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise invalid(field, "must be a number")
    return float(value)
