"""Wires the worker process: logging, tracing, methods, server, parent watch; then exits."""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import IO, NoReturn

from dops_worker.protocol.framing import max_frame_bytes_from_env
from dops_worker.runtime.logs import configure_logging
from dops_worker.runtime.parent_watch import ParentWatch, parent_pid_from_env
from dops_worker.runtime.registry import MethodRegistry, registry
from dops_worker.runtime.server import WorkerServer
from dops_worker.runtime.session import Session
from dops_worker.runtime.settings import configure_node_settings
from dops_worker.runtime.telemetry import configure_tracing, shutdown_tracing

_log = logging.getLogger("dops_worker")
_TRACING_SHUTDOWN_S = 2.0


def run(frames_in: IO[bytes], frames_out: IO[bytes], methods: MethodRegistry | None = None) -> NoReturn:
    """Serves until stdin EOF, ``worker.shutdown`` or the parent's death, then ``os._exit``s.

    ``os._exit`` because a request stuck in native code must not keep the process alive.
    """
    # Owner-only from the first file on: artifacts, previews and anything a library writes carry
    # prompts and images of other people's jobs.
    os.umask(0o077)
    configure_logging()
    configure_node_settings()  # once, here: a request can never change them
    configure_tracing()
    import dops_worker.runtime.methods  # noqa: F401 - registers the worker's methods

    session = Session()
    server = WorkerServer(frames_in, frames_out, methods or registry, session, max_frame_bytes_from_env())
    watch = ParentWatch(parent_pid_from_env(), lambda: server.request_exit(0, "parent process exited"))
    _log.info("worker starting", extra={"pid": session.pid, "parentPid": watch.pid, "python": sys.version.split()[0]})
    watch.start()
    server.start()
    try:
        code = server.wait()
    except KeyboardInterrupt:
        code = 130
    watch.stop()
    flush = threading.Thread(target=shutdown_tracing, daemon=True)
    flush.start()
    flush.join(_TRACING_SHUTDOWN_S)
    logging.shutdown()
    sys.stderr.flush()
    os._exit(code if code is not None else 0)
