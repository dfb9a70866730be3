"""The server loop in-process over pipes, with handlers registered just for these tests."""

import json
import os
import threading
import time
from concurrent.futures import Future

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from dops_worker.protocol.errors import ErrorCode, WorkerError
from dops_worker.runtime.registry import MethodRegistry
from dops_worker.runtime.server import WorkerServer
from dops_worker.runtime.session import Session

EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def tracing():
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(provider)
    yield


class Harness:
    def __init__(self, registry: MethodRegistry, max_frame_bytes: int = 1 << 20) -> None:
        in_r, self._in_w = os.pipe()
        out_r, out_w = os.pipe()
        self.to_server = os.fdopen(self._in_w, "wb", buffering=0)
        self.from_server = os.fdopen(out_r, "rb")
        self.server = WorkerServer(os.fdopen(in_r, "rb"), os.fdopen(out_w, "wb", buffering=0), registry, Session(),
                                   max_frame_bytes)
        self.server.start()

    def send(self, message) -> None:
        self.to_server.write(json.dumps(message).encode() + b"\n")

    def read(self) -> dict:
        return json.loads(self.from_server.readline())

    def close(self) -> int | None:
        self.to_server.close()
        return self.server.wait(5)


def make_registry(deferred: dict[object, Future] | None = None, events: list[str] | None = None) -> MethodRegistry:
    """``t.deferred`` returns ``deferred[params["key"]]`` (a future the test completes), after a
    ``$/progress`` with phase writing; ``events`` records handler starts and ends."""
    registry = MethodRegistry()
    deferred = deferred if deferred is not None else {}
    events = events if events is not None else []

    @registry.method("t.deferred", requires_init=False)
    def deferred_handler(params, ctx):
        events.append(f"start {ctx.request_id}")
        ctx.progress(1, 1, phase="writing")
        events.append(f"return {ctx.request_id}")
        return deferred[params["key"]]

    @registry.method("t.stop", requires_init=False, drains=True)
    def stop(params, ctx):
        events.append(f"start {ctx.request_id}")
        ctx.exit_after_reply = 0
        return {}

    @registry.method("t.echo", requires_init=False)
    def echo(params, ctx):
        events.append(f"start {ctx.request_id}")
        return {"params": params}

    @registry.method("t.oom", requires_init=False)
    def oom(params, ctx):
        raise RuntimeError("HIP out of memory. Tried to allocate 20.00 MiB")

    @registry.method("t.huge", requires_init=False)
    def huge(params, ctx):
        return {"blob": "x" * 5000}

    @registry.method("t.needs_init")
    def needs_init(params, ctx):
        return {}

    @registry.method("t.steps", requires_init=False)
    def steps(params, ctx):
        for step in (1, 2):
            ctx.progress(step, 2)
        return {}

    @registry.method("worker.ping", requires_init=False)
    def ping(params, ctx):
        return {}

    @registry.method("t.block", requires_init=False)
    def block(params, ctx):
        ctx.token.wait(5)
        ctx.token.raise_if_cancelled()
        return {}

    return registry


def test_registry_rejects_duplicate_names():
    registry = make_registry()
    with pytest.raises(ValueError):
        registry.method("t.echo")(lambda p, c: None)


def test_traceparent_becomes_the_parent_of_the_request_span():
    harness = Harness(make_registry())
    trace_id, parent_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    harness.send({"jsonrpc": "2.0", "id": 1, "method": "t.echo",
                  "params": {"_meta": {"traceparent": f"00-{trace_id}-{parent_span}-01"}}})
    assert harness.read()["result"]["params"]["_meta"]["traceparent"].startswith("00-")
    assert harness.close() == 0
    spans = [s for s in EXPORTER.get_finished_spans() if s.name == "t.echo"]
    assert spans, "no span exported"
    span = spans[-1]
    assert f"{span.context.trace_id:032x}" == trace_id
    assert span.parent is not None and f"{span.parent.span_id:016x}" == parent_span
    assert span.kind is trace.SpanKind.SERVER


def test_handler_oom_becomes_out_of_memory_reply_and_span_error():
    harness = Harness(make_registry())
    harness.send({"jsonrpc": "2.0", "id": "a", "method": "t.oom"})
    reply = harness.read()
    assert reply["id"] == "a" and reply["error"]["code"] == -32000
    assert reply["error"]["data"]["code"] == "OUT_OF_MEMORY" and reply["error"]["data"]["retryable"] is True
    harness.close()
    span = [s for s in EXPORTER.get_finished_spans() if s.name == "t.oom"][-1]
    assert span.attributes["dops.error.code"] == "OUT_OF_MEMORY"


def test_reply_over_the_frame_limit_becomes_exactly_one_error_reply():
    harness = Harness(make_registry(), max_frame_bytes=1024)
    harness.send({"jsonrpc": "2.0", "id": 9, "method": "t.huge"})
    harness.send({"jsonrpc": "2.0", "id": 10, "method": "t.echo"})
    first, second = harness.read(), harness.read()
    assert first["id"] == 9 and first["error"]["data"]["code"] == "RESOURCE_EXHAUSTED"
    assert second["id"] == 10 and "result" in second
    harness.close()


def test_methods_needing_initialize_are_refused_before_it():
    harness = Harness(make_registry())
    harness.send({"jsonrpc": "2.0", "id": 1, "method": "t.needs_init"})
    reply = harness.read()
    assert reply["error"]["data"]["code"] == ErrorCode.FAILED_PRECONDITION.value
    harness.close()


def test_duplicate_active_id_is_refused_and_original_still_replies_once():
    harness = Harness(make_registry())
    harness.send({"jsonrpc": "2.0", "id": 5, "method": "t.block"})
    harness.send({"jsonrpc": "2.0", "id": 5, "method": "t.echo"})
    duplicate = harness.read()
    assert duplicate["error"]["data"]["code"] == "ALREADY_EXISTS"
    harness.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 5}})
    cancelled = harness.read()
    assert cancelled["id"] == 5 and cancelled["error"]["data"]["code"] == "CANCELLED"
    harness.close()


def test_eof_cancels_queued_requests_with_one_reply_each():
    harness = Harness(make_registry())
    harness.send({"jsonrpc": "2.0", "id": 1, "method": "t.block"})
    harness.send({"jsonrpc": "2.0", "id": 2, "method": "t.echo"})
    assert harness.close() == 0
    replies = [harness.read(), harness.read()]
    assert sorted(r["id"] for r in replies) == [1, 2]
    assert {r["error"]["data"]["code"] for r in replies} == {"CANCELLED"}


def test_worker_error_from_handler_keeps_its_flags():
    registry = MethodRegistry()

    @registry.method("t.lost", requires_init=False)
    def lost(params, ctx):
        raise WorkerError(ErrorCode.UNAVAILABLE, "device removed", fatal=True)

    harness = Harness(registry)
    harness.send({"jsonrpc": "2.0", "id": 1, "method": "t.lost"})
    assert harness.read()["error"]["data"] == {"code": "UNAVAILABLE", "retryable": True, "fatal": True}
    harness.close()


def test_status_counts_running_and_queued():
    harness = Harness(make_registry())
    harness.send({"jsonrpc": "2.0", "id": 1, "method": "t.block"})
    harness.send({"jsonrpc": "2.0", "id": 2, "method": "t.echo"})
    done = threading.Event()
    for _ in range(100):
        status = harness.server.status()
        if status == {"busy": True, "activeRequests": 2}:
            done.set()
            break
        threading.Event().wait(0.01)
    assert done.is_set(), harness.server.status()
    harness.close()


@pytest.mark.parametrize("name", ["allowUnsafePickle", "allow_unsafe_pickle"])
def test_a_node_setting_in_any_request_is_refused_before_the_handler(name):
    harness = Harness(make_registry())
    harness.send({"jsonrpc": "2.0", "id": 1, "method": "t.echo", "params": {name: True}})
    reply = harness.read()
    assert reply["error"]["code"] == -32602
    assert reply["error"]["data"]["code"] == "INVALID_ARGUMENT"
    assert reply["error"]["data"]["details"]["field"] == name
    assert "node setting (DOPS_ALLOW_UNSAFE_PICKLE)" in reply["error"]["message"]
    harness.close()


def test_progress_steps_become_events_of_the_request_span():
    harness = Harness(make_registry())
    harness.send({"jsonrpc": "2.0", "id": 7, "method": "t.steps",
                  "params": {"_meta": {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b7-01"}}})
    replies = [harness.read() for _ in range(3)]
    assert [r.get("method") for r in replies] == ["$/progress", "$/progress", None]
    harness.close()
    span = [s for s in EXPORTER.get_finished_spans() if s.name == "t.steps"][-1]
    assert [(e.name, e.attributes["dops.step"], e.attributes["dops.total"]) for e in span.events] == [
        ("step", 1, 2), ("step", 2, 2)]


def test_the_writing_signal_is_a_writing_event_not_another_step():
    from dops_worker.runtime.telemetry import step_event

    with trace.get_tracer("test").start_as_current_span("t.writing"):
        step_event(2, 2)
        step_event(2, 2, "writing")
    span = [s for s in EXPORTER.get_finished_spans() if s.name == "t.writing"][-1]
    assert [(e.name, e.attributes["dops.step"]) for e in span.events] == [("step", 2), ("writing", 2)]


def test_heartbeats_are_not_traced():
    harness = Harness(make_registry())
    before = len(EXPORTER.get_finished_spans())
    for i in range(3):
        harness.send({"jsonrpc": "2.0", "id": 100 + i, "method": "worker.ping", "params": {}})
        assert harness.read()["id"] == 100 + i
    harness.send({"jsonrpc": "2.0", "id": 200, "method": "t.echo", "params": {}})
    harness.read()
    harness.close()
    names = [s.name for s in EXPORTER.get_finished_spans()[before:]]
    assert names == ["t.echo"]


def test_otlp_settings_pick_the_exporter_and_the_traces_url():
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

    from dops_worker.runtime.telemetry import _exporter, otlp_http_traces_url

    assert otlp_http_traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert otlp_http_traces_url("http://collector:4318/custom") == "http://collector:4318/custom"
    assert isinstance(_exporter("http://collector:4317", "grpc"), Grpc)
    http = _exporter("http://collector:4318", "http/protobuf")
    assert isinstance(http, Http) and http._endpoint == "http://collector:4318/v1/traces"
    assert isinstance(_exporter("http://collector:4318", "http/json"), Http)
    with pytest.raises(ValueError):
        _exporter("http://collector:4318", "carrier-pigeon")


def test_log_lines_inside_a_request_carry_its_trace_id_as_the_services_do():
    import logging

    from dops_worker.runtime.logs import JsonLineFormatter

    record = logging.makeLogRecord({"msg": "step done", "levelno": logging.INFO, "name": "dops_worker.t"})
    assert "trace_id" not in json.loads(JsonLineFormatter().format(record))
    with trace.get_tracer("t").start_as_current_span("job") as span:
        line = json.loads(JsonLineFormatter().format(record))
    assert line["trace_id"] == f"{span.get_span_context().trace_id:032x}"
    assert line["span_id"] == f"{span.get_span_context().span_id:016x}"


# Deferred replies ---------------------------------------------------------------------------------


def _eventually(check, seconds=5.0):
    until = time.monotonic() + seconds
    while not check():
        if time.monotonic() > until:
            return False
        time.sleep(0.01)
    return True


def test_a_deferred_reply_frees_the_executor_and_each_request_replies_once():
    futures, events = {"a": Future(), "b": Future()}, []
    harness = Harness(make_registry(futures, events))
    harness.send({"jsonrpc": "2.0", "id": 1, "method": "t.deferred", "params": {"key": "a"}})
    harness.send({"jsonrpc": "2.0", "id": 2, "method": "t.echo", "params": {}})
    harness.send({"jsonrpc": "2.0", "id": 3, "method": "t.deferred", "params": {"key": "b"}})
    writing = harness.read()
    assert writing == {"jsonrpc": "2.0", "method": "$/progress",
                       "params": {"id": 1, "step": 1, "total": 1, "phase": "writing"}}
    # The echo queued behind request 1 ran and replied while request 1's reply still waits.
    echo = harness.read()
    assert echo["id"] == 2 and "result" in echo
    assert harness.read()["params"] == {"id": 3, "step": 1, "total": 1, "phase": "writing"}
    assert _eventually(lambda: harness.server.status() == {"busy": False, "activeRequests": 2}), \
        harness.server.status()
    assert events == ["start 1", "return 1", "start 2", "start 3", "return 3"]
    # A cancel now changes nothing: the writes end and the request replies with its result.
    harness.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 3}})
    futures["b"].set_result({"written": "b"})  # completes from this (a foreign) thread, out of order
    assert harness.read() == {"jsonrpc": "2.0", "id": 3, "result": {"written": "b"}}
    futures["a"].set_exception(RuntimeError("CUDA out of memory. Tried to allocate 2.00 MiB"))
    failed = harness.read()
    assert failed["id"] == 1 and failed["error"]["data"]["code"] == "OUT_OF_MEMORY"
    assert harness.server.status() == {"busy": False, "activeRequests": 0}
    assert harness.close() == 0
    os.set_blocking(harness.from_server.fileno(), False)
    assert harness.from_server.read() in (None, b"")  # nothing more: one reply each
    spans = {s.attributes["rpc.jsonrpc.request_id"]: s for s in EXPORTER.get_finished_spans()[-3:]}
    assert spans["1"].attributes["dops.error.code"] == "OUT_OF_MEMORY"
    assert "dops.error.code" not in spans["3"].attributes


def test_the_request_span_ends_when_the_deferred_reply_leaves():
    futures = {"a": Future()}
    harness = Harness(make_registry(futures))
    before = len(EXPORTER.get_finished_spans())
    harness.send({"jsonrpc": "2.0", "id": 1, "method": "t.deferred", "params": {"key": "a"}})
    harness.read()
    harness.send({"jsonrpc": "2.0", "id": 2, "method": "t.echo", "params": {}})
    harness.read()
    names = lambda: [s.name for s in EXPORTER.get_finished_spans()[before:]]  # noqa: E731
    assert _eventually(lambda: names() == ["t.echo"]), names()
    time.sleep(0.1)
    assert names() == ["t.echo"]
    futures["a"].set_result({})
    harness.read()
    assert _eventually(lambda: names() == ["t.echo", "t.deferred"]), names()
    harness.close()


def test_stdin_eof_and_exit_wait_for_a_deferred_reply():
    futures = {"a": Future()}
    harness = Harness(make_registry(futures))
    harness.send({"jsonrpc": "2.0", "id": 1, "method": "t.deferred", "params": {"key": "a"}})
    harness.read()
    harness.to_server.close()
    threading.Timer(0.3, lambda: futures["a"].set_result({"late": True})).start()
    started = time.monotonic()
    assert harness.server.wait(5) == 0
    assert time.monotonic() - started >= 0.2
    assert harness.read() == {"jsonrpc": "2.0", "id": 1, "result": {"late": True}}


def test_request_exit_does_not_drop_a_deferred_reply():
    futures = {"a": Future()}
    harness = Harness(make_registry(futures))
    harness.send({"jsonrpc": "2.0", "id": 1, "method": "t.deferred", "params": {"key": "a"}})
    harness.read()
    harness.server.request_exit(0, "parent process exited")
    threading.Timer(0.3, lambda: futures["a"].set_result({"late": True})).start()
    assert harness.server.wait(5) == 0
    assert harness.read() == {"jsonrpc": "2.0", "id": 1, "result": {"late": True}}


def test_shutdown_replies_after_every_deferred_reply_before_it():
    futures, events = {"a": Future()}, []
    harness = Harness(make_registry(futures, events))
    harness.send({"jsonrpc": "2.0", "id": 1, "method": "t.deferred", "params": {"key": "a"}})
    harness.send({"jsonrpc": "2.0", "id": 2, "method": "t.stop", "params": {}})
    harness.read()
    time.sleep(0.2)
    assert events == ["start 1", "return 1"]  # the drain waits for request 1's reply
    futures["a"].set_result({"first": True})
    assert harness.read() == {"jsonrpc": "2.0", "id": 1, "result": {"first": True}}
    assert harness.read() == {"jsonrpc": "2.0", "id": 2, "result": {}}
    assert harness.server.wait(5) == 0
