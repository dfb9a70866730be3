"""Shared test plumbing: a client that talks to a worker subprocess over the real protocol."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

TESTS_DIR = Path(__file__).resolve().parent
FIXTURES_DIR = TESTS_DIR / "fixtures"
PACKAGE_DIR = TESTS_DIR.parent
REPO_ROOT = PACKAGE_DIR.parent
GENERATED_FIXTURES = REPO_ROOT / "tools" / "fixtures" / "generated"


class _OpensMarker:
    """Unpickling this calls ``open(marker, "w")``: a hostile checkpoint's ``os.system`` in miniature."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


@pytest.fixture
def pickle_marker(tmp_path: Path) -> Path:
    """The file a hostile pickle creates when something unpickles it; tests assert it never appears."""
    return tmp_path / "PICKLE-CODE-RAN"


@pytest.fixture
def hostile_pickle(pickle_marker: Path) -> Callable[..., Path]:
    """``hostile_pickle(path, legacy=False)`` writes, as ``torch.save`` would (or as a bare legacy
    pickle), a state dict whose loading creates ``pickle_marker``."""

    def write(path: Path, *, legacy: bool = False) -> Path:
        import torch

        payload = {"state_dict": {"weight": _OpensMarker(pickle_marker)}}
        path.parent.mkdir(parents=True, exist_ok=True)
        if legacy:
            path.write_bytes(pickle.dumps(payload, protocol=2))
        else:
            torch.save(payload, path)
        return path

    return write


@pytest.fixture
def torch_loads(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every ``torch.load`` call's keyword arguments (the call still happens): tests assert each one
    passed ``weights_only=True`` itself, since torch 2.4.1 (the DirectML lane) defaults to False."""
    import torch

    calls: list[dict[str, Any]] = []
    real = torch.load

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    return calls


@pytest.fixture(scope="session", autouse=True)
def node_defaults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """In-process node settings for the whole session, as a worker would read them at start: model
    roots = pytest's temp folder (every fixture the tests build) and the generated fixtures; pickle
    off. Nothing of the developer's environment leaks in."""
    from dops_worker.runtime import settings

    model_roots = [tmp_path_factory.getbasetemp(), GENERATED_FIXTURES]
    if os.environ.get("DOPS_FIXTURES_DIR"):
        model_roots.append(Path(os.environ["DOPS_FIXTURES_DIR"]))
    previous = settings._current
    settings._current = settings.read_node_settings({"DOPS_MODEL_ROOTS": os.pathsep.join(map(str, model_roots))})
    yield settings._current
    settings._current = previous


@pytest.fixture
def node(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """``node(input_root=…, artifact_root=…, model_roots=[…], allow_unsafe_pickle=…)`` changes this
    test's node settings (roots given as paths); undone after the test."""
    from dops_worker.protocol.files import Roots
    from dops_worker.runtime import settings

    def change(*, input_root: Path | None = None, artifact_root: Path | None = None,
               model_roots: list[Path] | None = None, **fields: Any) -> Any:
        current = settings.node_settings()
        if input_root is not None:
            fields["input_roots"] = Roots(current.input_roots.name, (input_root,))
        if artifact_root is not None:
            fields["artifact_roots"] = Roots(current.artifact_roots.name, (artifact_root,))
        if model_roots is not None:
            fields["model_roots"] = Roots(current.model_roots.name, tuple(model_roots))
        monkeypatch.setattr(settings, "_current", dataclasses.replace(current, **fields))
        return settings._current

    return change


class WorkerClient:
    """A worker subprocess plus threads that collect its stdout frames and stderr lines.

    Every stdout line must be JSON; anything else lands in ``garbage`` and fails the test.
    """

    def __init__(self, args: list[str], env: dict[str, str] | None = None, **popen: Any) -> None:
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "DOPS_BACKEND": "cpu", **(env or {})}
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=full_env, **popen)
        self.messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.garbage: list[bytes] = []
        self.stderr_lines: list[str] = []
        self._next_id = 1000
        self._stdout_thread = threading.Thread(target=self._read_stdout, daemon=True)
        self._stdout_thread.start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.messages.put(json.loads(line))
            except ValueError:
                self.garbage.append(line)
        self.messages.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line.decode("utf-8", "replace").rstrip("\n"))

    def send(self, message: dict[str, Any] | bytes) -> None:
        assert self.proc.stdin is not None
        data = message if isinstance(message, bytes) else json.dumps(message).encode() + b"\n"
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def request(self, method: str, params: dict[str, Any] | None = None, request_id: Any = None) -> Any:
        """Sends a request; returns its id."""
        if request_id is None:
            self._next_id += 1
            request_id = self._next_id
        self.send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}})
        return request_id

    def notify(self, method: str, params: dict[str, Any]) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def next_message(self, timeout: float = 10.0) -> dict[str, Any]:
        try:
            message = self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no message within {timeout}s; stderr tail: {self.stderr_lines[-5:]}") from None
        if message is None:
            self.messages.put(None)  # keep reporting EOF
            raise AssertionError(f"worker stdout closed; stderr tail: {self.stderr_lines[-5:]}")
        self.seen.append(message)
        return message

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching message within {timeout}s")
            message = self.next_message(remaining)
            if predicate(message):
                return message

    def response(self, request_id: Any, timeout: float = 10.0) -> dict[str, Any]:
        return self.wait_for(lambda m: m.get("id") == request_id and "method" not in m, timeout)

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30.0) -> Any:
        """Request + its response; returns ``result`` or fails the test on an error reply."""
        reply = self.response(self.request(method, params), timeout)
        assert "error" not in reply, reply
        return reply["result"]

    def initialize(self, **params: Any) -> dict[str, Any]:
        return self.call("initialize", {"protocolVersion": 1, **params}, timeout=60)

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def wait_exit(self, timeout: float = 10.0) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass


def worker_args() -> list[str]:
    return [sys.executable, "-m", "dops_worker"]


@pytest.fixture
def spawn() -> Iterator[Callable[..., WorkerClient]]:
    """Factory: ``spawn(args=None, env=None)``; every client is killed and checked for garbage at teardown."""
    clients: list[WorkerClient] = []

    def make(args: list[str] | None = None, env: dict[str, str] | None = None, **popen: Any) -> WorkerClient:
        client = WorkerClient(args or worker_args(), env, **popen)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.kill()
    for client in clients:
        assert client.garbage == [], f"non-JSON on stdout: {client.garbage[:3]}"


@pytest.fixture(scope="module")
def cpu_worker() -> Iterator[WorkerClient]:
    """One initialized CPU worker shared by a module's tests (torch import costs seconds)."""
    client = WorkerClient(worker_args())
    client.init_result = client.initialize()  # type: ignore[attr-defined]
    yield client
    client.kill()
    assert client.garbage == [], f"non-JSON on stdout: {client.garbage[:3]}"


@pytest.fixture
def fresh_messages(cpu_worker: WorkerClient) -> WorkerClient:
    """The shared worker with stale messages from earlier tests drained."""
    while True:
        try:
            if cpu_worker.messages.get_nowait() is None:
                cpu_worker.messages.put(None)
                break
        except queue.Empty:
            break
    return cpu_worker
