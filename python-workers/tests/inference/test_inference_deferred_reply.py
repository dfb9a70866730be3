"""inference.generate over the worker's server: once only the PNG writes remain it says
``$/progress {phase: "writing"}`` and frees the execution thread; the reply comes when they end."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dops_worker.runtime.registry import registry
from dops_worker.runtime.server import WorkerServer
from dops_worker.runtime.session import Session


class _Backend:
    torch_device = "cpu"

    def device(self) -> dict[str, Any]:
        return {"capabilities": {"generatorDevice": "cpu"}}

    def release_caches(self) -> None:
        pass


class _Client:
    def __init__(self) -> None:
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        self.to_server = os.fdopen(in_w, "wb", buffering=0)
        self.from_server = os.fdopen(out_r, "rb")
        session = Session()
        session.backend = _Backend()  # type: ignore[assignment]
        self.server = WorkerServer(os.fdopen(in_r, "rb"), os.fdopen(out_w, "wb", buffering=0), registry, session,
                                   1 << 24)
        self.server.start()

    def send(self, message: dict[str, Any]) -> None:
        self.to_server.write(json.dumps(message).encode() + b"\n")

    def read(self) -> dict[str, Any]:
        return json.loads(self.from_server.readline())


@pytest.fixture
def client(sd15: Any, roots: tuple[Path, Path], node: Any) -> Iterator[_Client]:
    from dops_worker.inference import methods

    node(input_root=roots[0], artifact_root=roots[1])
    methods.register_loaded_model("tiny-sd15", sd15, {"sha256": "cd" * 32})
    client = _Client()
    yield client
    client.to_server.close()
    assert client.server.wait(30) == 0


@pytest.fixture
def gated_writes(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, list[tuple[Any, ...]]]:
    """Every PNG write waits for the gate, then runs the real ``artifacts.write_image``; the
    arguments of each are recorded."""
    from dops_worker.inference import generate as generate_module

    gate = threading.Event()
    calls: list[tuple[Any, ...]] = []
    real = generate_module.write_image

    def gated(*args: Any) -> dict[str, Any]:
        calls.append(args)
        assert gate.wait(30), "the test never opened the gate"
        return real(*args)

    monkeypatch.setattr(generate_module, "write_image", gated)
    return gate, calls


def _eventually(check: Any, seconds: float = 5.0) -> bool:
    until = time.monotonic() + seconds
    while not check():
        if time.monotonic() > until:
            return False
        time.sleep(0.01)
    return True


def _generate(request_id: int, seed: int) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "inference.generate",
            "params": {"model": "tiny-sd15", "prompt": "a red cube", "width": 64, "height": 48, "steps": 2,
                       "seed": seed, "scheduler": "Euler", "outputDir": f"job-{request_id}"}}


def test_the_next_generation_runs_while_the_writes_of_the_first_wait_and_each_replies_once(
        client: _Client, gated_writes: tuple[threading.Event, list[tuple[Any, ...]]], roots: tuple[Path, Path]) -> None:
    gate, calls = gated_writes
    client.send(_generate(1, 5))
    client.send(_generate(2, 6))
    # Both runs' device work ends while the first one's write is still held: the frames until the
    # second one's "writing" are progress only, the first one's "writing" before any of the second's.
    frames = []
    while not (frames and frames[-1].get("params", {}).get("phase") == "writing"
               and frames[-1]["params"]["id"] == 2):
        frames.append(client.read())
    assert all(frame.get("method") == "$/progress" for frame in frames), frames
    assert [(f["params"]["id"], f["params"]["step"], f["params"]["total"], f["params"].get("phase"))
            for f in frames] == [(1, 1, 2, None), (1, 2, 2, None), (1, 2, 2, "writing"),
                                 (2, 1, 2, None), (2, 2, 2, None), (2, 2, 2, "writing")]
    # Once the second handler returned too: neither runs, both still await their reply.
    assert _eventually(lambda: client.server.status() == {"busy": False, "activeRequests": 2})
    gate.set()
    replies = [client.read(), client.read()]
    assert sorted(reply["id"] for reply in replies) == [1, 2]
    assert client.server.status() == {"busy": False, "activeRequests": 0}
    by_id = {reply["id"]: reply["result"] for reply in replies}
    assert [by_id[1]["seed"], by_id[2]["seed"]] == [5, 6]

    # The bytes are the ones artifacts.write_image writes for the decoded image, and the sha256 theirs.
    from dops_worker.inference.artifacts import write_image

    assert len(calls) == 2
    for image, request, seed, index, name in calls:
        written = next(result["images"][0] for result in by_id.values() if result["seed"] == seed)
        data = Path(written["path"]).read_bytes()
        assert written["sha256"] == hashlib.sha256(data).hexdigest()
        again = write_image(image, dataclasses.replace(request, output_dir=roots[1] / "again"), seed, index, name)
        assert Path(again["path"]).read_bytes() == data


def test_a_failed_write_is_the_reply(client: _Client, monkeypatch: pytest.MonkeyPatch) -> None:
    from dops_worker.inference import generate as generate_module

    def failing(*args: Any) -> dict[str, Any]:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(generate_module, "write_image", failing)
    client.send(_generate(1, 5))
    frames = [client.read() for _ in range(4)]
    assert [f.get("params", {}).get("phase") for f in frames[:3]] == [None, None, "writing"]
    assert frames[3]["id"] == 1 and frames[3]["error"]["data"]["code"] == "INTERNAL"
    assert "No space left on device" in frames[3]["error"]["message"]


def test_stdin_eof_waits_for_the_writes_and_their_reply(
        client: _Client, gated_writes: tuple[threading.Event, list[tuple[Any, ...]]]) -> None:
    gate, _ = gated_writes
    client.send(_generate(1, 5))
    while client.read().get("params", {}).get("phase") != "writing":
        pass
    client.to_server.close()
    threading.Timer(0.5, gate.set).start()
    started = time.monotonic()
    assert client.server.wait(10) == 0
    assert time.monotonic() - started >= 0.4  # the exit waited for the writes
    reply = client.read()
    assert reply["id"] == 1 and reply["result"]["seed"] == 5
    assert Path(reply["result"]["images"][0]["path"]).is_file()
