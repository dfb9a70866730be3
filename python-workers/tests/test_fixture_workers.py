"""The broken fixture workers behave exactly as their docstrings promise the supervisor tests."""

import ast
import signal
import sys
import time
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
NAMES = ["crash_mid_request", "hang", "ignore_cancel", "garbage_stdout", "oversized_reply", "fail_init", "exit_at_once"]


def fixture(spawn, name):
    return spawn(args=[sys.executable, str(FIXTURES / f"{name}.py")])


@pytest.mark.parametrize("name", NAMES)
def test_every_fixture_is_documented(name):
    docstring = ast.get_docstring(ast.parse((FIXTURES / f"{name}.py").read_text()))
    assert docstring and docstring.startswith("Fixture:")


def test_crash_mid_request(spawn):
    worker = fixture(spawn, "crash_mid_request")
    assert worker.initialize()["protocolVersion"] == 1
    request_id = worker.request("diagnostics.steps", {"steps": 5, "stepMs": 10})
    progress = worker.next_message()
    assert progress == {"jsonrpc": "2.0", "method": "$/progress", "params": {"id": request_id, "step": 1, "total": 5}}
    assert worker.wait_exit(5) == 3


def test_hang_answers_initialize_then_nothing(spawn):
    worker = fixture(spawn, "hang")
    worker.initialize()
    worker.request("worker.ping")
    with pytest.raises(AssertionError):
        worker.next_message(timeout=0.5)
    worker.close_stdin()
    worker.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert worker.proc.poll() is None  # only SIGKILL ends it
    worker.proc.kill()
    assert worker.wait_exit(5) == -signal.SIGKILL


def test_ignore_cancel_completes_and_answers_pings(spawn):
    worker = fixture(spawn, "ignore_cancel")
    worker.initialize()
    request_id = worker.request("diagnostics.steps", {"steps": 4, "stepMs": 50})
    worker.wait_for(lambda m: m.get("method") == "$/progress")
    worker.notify("$/cancelRequest", {"id": request_id})
    ping = worker.call("worker.ping")
    assert ping["busy"] is True
    assert worker.response(request_id)["result"] == {"completed": 4}
    worker.close_stdin()
    assert worker.wait_exit(5) == 0


def test_garbage_stdout(spawn):
    worker = fixture(spawn, "garbage_stdout")
    worker.initialize()
    deadline = time.monotonic() + 5
    while not worker.garbage and time.monotonic() < deadline:
        time.sleep(0.02)
    assert worker.garbage == [b"this is not JSON: a library printed to stdout\n"]
    worker.garbage.clear()  # expected here; the spawn fixture asserts none is left
    worker.close_stdin()
    assert worker.wait_exit(5) == 0


def test_oversized_reply(spawn):
    worker = fixture(spawn, "oversized_reply")
    worker.initialize()
    request_id = worker.request("memory.stats")
    reply = worker.response(request_id, timeout=20)
    assert len(reply["result"]["blob"]) == 20 * 1024 * 1024
    worker.close_stdin()
    assert worker.wait_exit(5) == 0


def test_fail_init(spawn):
    worker = fixture(spawn, "fail_init")
    reply = worker.response(worker.request("initialize", {"protocolVersion": 1}))
    assert reply["error"]["code"] == -32000
    assert reply["error"]["data"]["code"] == "FAILED_PRECONDITION"
    assert reply["error"]["data"]["retryable"] is False and reply["error"]["data"]["fatal"] is False
    worker.close_stdin()
    assert worker.wait_exit(5) == 0


def test_exit_at_once(spawn):
    worker = fixture(spawn, "exit_at_once")
    assert worker.wait_exit(5) == 1
    with pytest.raises(AssertionError):
        worker.next_message(timeout=1)
