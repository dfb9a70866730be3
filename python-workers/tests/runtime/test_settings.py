"""Node settings are read from the environment once; pickle is off unless the operator says 1/true,
and on, the worker says so loudly."""

from __future__ import annotations

import io
import json
import logging

import pytest

from dops_worker.runtime import settings
from dops_worker.runtime.logs import JsonLineFormatter


@pytest.mark.parametrize(("value", "allowed"), [
    (None, False), ("", False), ("0", False), ("false", False), ("no", False), ("yes", False),
    ("1", True), ("true", True), ("TRUE", True), (" True ", True),
])
def test_pickle_is_on_only_for_1_or_true(value, allowed):
    env = {} if value is None else {"DOPS_ALLOW_UNSAFE_PICKLE": value}
    assert settings.read_node_settings(env).allow_unsafe_pickle is allowed


@pytest.mark.parametrize("allowed", [False, True])
def test_configuring_warns_loudly_only_when_pickle_is_on(monkeypatch, allowed):
    monkeypatch.setattr(settings, "_current", None)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLineFormatter())
    logger = logging.getLogger("dops_worker.settings")
    logger.addHandler(handler)
    try:
        env = {"DOPS_ALLOW_UNSAFE_PICKLE": "1"} if allowed else {}
        configured = settings.configure_node_settings(settings.read_node_settings(env))
    finally:
        logger.removeHandler(handler)
    assert settings.node_settings() is configured
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    if allowed:
        assert [line["level"] for line in lines] == ["warning"]
        assert lines[0]["msg"].startswith("UNSAFE: DOPS_ALLOW_UNSAFE_PICKLE is on")
    else:
        assert lines == []
