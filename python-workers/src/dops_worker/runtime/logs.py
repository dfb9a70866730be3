"""JSON log lines on stderr: ``{"ts", "level", "logger", "msg", ...extra}`` (worker-protocol.md)."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

_LEVELS = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "error",
}

# Attributes every LogRecord has; anything else was passed through ``extra=`` and is emitted.
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonLineFormatter(logging.Formatter):
    """One JSON object per record; adds trace ids when a span is current."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": _LEVELS.get(record.levelno, "info"),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        entry.update(_trace_fields())
        return json.dumps(entry, default=str, ensure_ascii=False)


def _trace_fields() -> dict[str, str]:
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return {}
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return {}
    # The names the services' own log lines use, so one query finds a job's lines in both.
    return {"trace_id": f"{span_context.trace_id:032x}", "span_id": f"{span_context.span_id:016x}"}


def configure_logging(stream: TextIO | None = None) -> None:
    """Route the root logger to ``stream`` (default stderr) as JSON lines.

    Level from ``DOPS_LOG_LEVEL`` (debug|info|warning|error, default info); Python warnings are
    captured into the log too.
    """
    handler = logging.StreamHandler(stream or sys.__stderr__)
    handler.setFormatter(JsonLineFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    level_name = os.environ.get("DOPS_LOG_LEVEL", "info").upper()
    root.setLevel(getattr(logging, level_name, logging.INFO) if level_name in _LEVEL_NAMES else logging.INFO)
    logging.captureWarnings(True)


_LEVEL_NAMES = frozenset({"DEBUG", "INFO", "WARNING", "ERROR"})
