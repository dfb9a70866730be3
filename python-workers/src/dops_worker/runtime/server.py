"""The server loop: a reader (control) thread, one execution thread, exactly one reply per request.

The reader thread parses frames, answers control traffic inline (``$/cancelRequest``,
``worker.ping``) and queues everything else for the execution thread, which runs requests one
at a time because GPU work is serial. A cancel therefore never waits behind a running request.

A handler may return a deferred result (a ``concurrent.futures.Future``, runtime/deferred.py):
the execution thread moves on to the next request at once, and the request's reply, span end and
after-reply tasks happen on the thread that completes the future. Such a request stays active
(``activeRequests``, cancel lookups: a cancel is then a no-op) until it replied, but no longer
makes the worker ``busy``: busy means the execution thread runs a request. A ``drains`` request
(worker.shutdown) runs only after every deferred reply left, and ``wait`` (the process's exit)
waits for them too, so stdin EOF, a shutdown or a dying parent never loses one.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field
from typing import IO, Any

from opentelemetry.trace import INVALID_SPAN, Span

from dops_worker.protocol.errors import ErrorCode, InvalidParams, WorkerError, classify_exception
from dops_worker.protocol.framing import FrameReader, FrameTooLarge, FrameWriter
from dops_worker.protocol.messages import (
    InvalidMessage,
    JsonRpcCode,
    Notification,
    Request,
    RequestId,
    Response,
    error_response,
    notification,
    parse_message,
    result_response,
)
from dops_worker.runtime.cancellation import CancelToken
from dops_worker.runtime.context import RequestContext
from dops_worker.runtime.params import parse_meta, refuse_node_settings
from dops_worker.runtime.registry import MethodRegistry, MethodSpec
from dops_worker.runtime.session import Session
from dops_worker.runtime.telemetry import current_span, mark_span_error, start_request_span

_log = logging.getLogger(__name__)

CANCEL_METHOD = "$/cancelRequest"
# After stdin EOF, how long cancelled requests get to reply before the process exits.
EOF_GRACE_S = 2.0
# How long the exit (and a worker.shutdown) waits for deferred replies (a batch's PNG writes).
DEFERRED_GRACE_S = 30.0


@dataclass
class _Pending:
    request: Request
    spec: MethodSpec
    token: CancelToken
    traceparent: str | None
    ctx: RequestContext | None = None
    span: Span = INVALID_SPAN
    deferred: bool = False  # the handler returned; the reply waits on its future
    replied: bool = False
    received_at: float = field(default_factory=time.monotonic)


class WorkerServer:
    """Serves one binary in/out stream pair until EOF, shutdown or ``request_exit``."""

    def __init__(
        self,
        frames_in: IO[bytes],
        frames_out: IO[bytes],
        registry: MethodRegistry,
        session: Session,
        max_frame_bytes: int,
    ) -> None:
        self._reader = FrameReader(frames_in, max_frame_bytes)
        self._writer = FrameWriter(frames_out, max_frame_bytes)
        self._registry = registry
        self.session = session
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._active: dict[RequestId, _Pending] = {}  # queued, running and deferred, by id
        self._running: _Pending | None = None
        self._lock = threading.Lock()
        self._deferred = 0  # deferred replies not yet written
        self._no_deferred = threading.Condition(self._lock)
        self._exit_code: int | None = None
        self._stopped = threading.Event()
        self._executor = threading.Thread(target=self._execute_loop, name="executor", daemon=True)
        self._reader_thread = threading.Thread(target=self._read_loop, name="reader", daemon=True)

    # lifecycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        self._executor.start()
        self._reader_thread.start()

    def wait(self, timeout: float | None = None) -> int | None:
        """Blocks until the server wants the process to exit and every deferred reply left (at
        most DEFERRED_GRACE_S more); returns the exit code (None on timeout)."""
        if self._stopped.wait(timeout):
            self._wait_for_deferred("exit")
        return self._exit_code

    def request_exit(self, code: int, reason: str) -> None:
        """Idempotent: the first call's code wins. Cancels whatever is still active."""
        with self._lock:
            if self._exit_code is not None:
                return
            self._exit_code = code
            active = list(self._active.values())
        _log.info("worker exiting", extra={"exitCode": code, "reason": reason})
        self.session.set_state("stopped")
        for pending in active:
            pending.token.cancel()
        self._stopped.set()

    def status(self) -> dict[str, Any]:
        """``busy``: the execution thread runs a request; ``activeRequests``: queued, running and
        deferred (replied later) requests."""
        with self._lock:
            return {"busy": self._running is not None, "activeRequests": len(self._active)}

    # reader (control) thread --------------------------------------------------------------------

    def _read_loop(self) -> None:
        try:
            for frame in self._reader:
                if frame.oversized:
                    self._send_protocol_error(
                        None,
                        JsonRpcCode.INVALID_REQUEST,
                        f"frame of {frame.oversized} bytes exceeds the {self._reader.max_frame_bytes}-byte limit",
                    )
                    continue
                try:
                    message = parse_message(frame.payload)
                except InvalidMessage as exc:
                    self._send_protocol_error(exc.request_id, exc.rpc_code, exc.reason)
                    continue
                if isinstance(message, Request):
                    self._accept(message)
                elif isinstance(message, Notification):
                    self._on_notification(message)
                elif isinstance(message, Response):
                    _log.debug("ignoring a response; the worker sends no requests", extra={"id": message.id})
        except (OSError, ValueError):
            _log.warning("reading stdin failed", exc_info=True)
        self._on_eof()

    def _on_eof(self) -> None:
        _log.info("stdin closed")
        self.session.set_state("draining")
        with self._lock:
            active = list(self._active.values())
        for pending in active:
            pending.token.cancel()
        # Requests still queued will never run: answer them now instead of after the running one.
        while True:
            try:
                queued = self._queue.get_nowait()
            except queue.Empty:
                break
            if queued is not None:
                with self._lock:
                    self._active.pop(queued.request.id, None)
                self._reply_error(queued, WorkerError(ErrorCode.CANCELLED, "stdin closed before the request ran"))
        self._queue.put(None)
        self._executor.join(EOF_GRACE_S)
        self.request_exit(0, "stdin EOF")

    def _on_notification(self, message: Notification) -> None:
        if message.method != CANCEL_METHOD:
            _log.debug("ignoring notification", extra={"method": message.method})
            return
        params = message.params if isinstance(message.params, dict) else {}
        target = params.get("id")
        with self._lock:
            pending = self._active.get(target) if isinstance(target, (int, str)) else None
        if pending is None:
            _log.debug("cancel for an unknown or finished request", extra={"id": target})
            return
        pending.token.cancel()
        if pending.deferred:
            _log.info("cancel of a request whose reply waits only on its writes: it still replies",
                      extra={"id": target, "method": pending.request.method})
            return
        _log.info("request cancelled", extra={"id": target, "method": pending.request.method})

    def _accept(self, request: Request) -> None:
        spec = self._registry.get(request.method)
        if spec is None:
            error = WorkerError(ErrorCode.UNSUPPORTED, f"method not found: {request.method}",
                                details={"method": request.method})
            self._write(error_response(request.id, error, JsonRpcCode.METHOD_NOT_FOUND))
            return
        try:
            traceparent, deadline = parse_meta(request.params)
            refuse_node_settings(request.params)  # for every method, whatever its own validation
        except InvalidParams as exc:
            self._write(error_response(request.id, exc))
            return
        pending = _Pending(request, spec, CancelToken(deadline), traceparent)
        if spec.inline:
            self._execute(pending)
            return
        with self._lock:
            refusal = self._refusal(request)
            if refusal is None:
                self._active[request.id] = pending
                if spec.drains:
                    self.session.set_state("draining")
        if refusal is not None:
            self._reply_error(pending, refusal)
            return
        if pending.token.reason is ErrorCode.DEADLINE_EXCEEDED:
            # Past its deadline on arrival: answer now rather than after the queue ahead of it.
            with self._lock:
                self._active.pop(request.id, None)
            self._reply_error(pending, WorkerError(ErrorCode.DEADLINE_EXCEEDED, "the deadline passed before the request arrived"))
            return
        self._queue.put(pending)

    def _refusal(self, request: Request) -> WorkerError | None:
        if self.session.state in ("draining", "stopped"):
            return WorkerError(ErrorCode.UNAVAILABLE, "the worker is shutting down")
        if request.id in self._active:
            return WorkerError(ErrorCode.ALREADY_EXISTS, f"request id {request.id!r} is already active")
        return None

    # execution thread ---------------------------------------------------------------------------

    def _execute_loop(self) -> None:
        while (pending := self._queue.get()) is not None:
            if pending.spec.drains:
                self._wait_for_deferred(pending.request.method)  # it replies after every earlier request
            with self._lock:
                self._running = pending
            if self._execute(pending):
                continue  # deferred: its completion runs what follows the reply
            if self._after_reply(pending):
                return

    def _after_reply(self, pending: _Pending) -> bool:
        """Runs the request's after-reply tasks; asks the process to exit when the handler said so
        (returns True then)."""
        ctx = pending.ctx
        for task in ctx.after_reply if ctx is not None else ():
            try:
                task()
            except Exception:  # noqa: BLE001 - the reply is out; a failed clean-up is logged, not fatal
                _log.exception("after-reply task failed", extra={"id": pending.request.id})
        if ctx is not None and ctx.exit_after_reply is not None:
            self.request_exit(ctx.exit_after_reply, f"{pending.request.method} replied")
            return True
        return False

    def _wait_for_deferred(self, what: str) -> None:
        with self._no_deferred:
            done = self._no_deferred.wait_for(lambda: self._deferred == 0, DEFERRED_GRACE_S)
        if not done:
            _log.warning("deferred replies still pending", extra={"waiter": what, "waitedS": DEFERRED_GRACE_S})

    def _execute(self, pending: _Pending) -> bool:
        """Runs the handler and replies; returns True when the result is deferred (the reply
        leaves when its future completes, from that thread)."""
        request = pending.request
        ctx = RequestContext(
            request_id=request.id,
            method=request.method,
            token=pending.token,
            session=self.session,
            notify=self._notify,
            status=self.status,
        )
        pending.ctx = ctx
        pending.span = start_request_span(request.method, request.id, pending.traceparent)
        with current_span(pending.span):
            try:
                if pending.spec.requires_init and not self.session.initialized:
                    raise WorkerError(ErrorCode.FAILED_PRECONDITION, "initialize has not succeeded yet")
                pending.token.raise_if_cancelled()
                result = pending.spec.handler(request.params, ctx)
            except BaseException as exc:  # noqa: BLE001 - every request gets exactly one reply
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    pending.span.end()
                    raise
                self._finish(pending, self._error_reply(pending, exc))
                return False
        if not isinstance(result, Future):
            self._finish(pending, result_response(request.id, result))
            return False
        with self._lock:
            pending.deferred = True
            self._deferred += 1
            if self._running is pending:
                self._running = None  # the execution thread is free for the next request
        result.add_done_callback(lambda done: self._complete_deferred(pending, done))
        return True

    def _complete_deferred(self, pending: _Pending, done: Future[Any]) -> None:
        """The reply of a deferred request, then its after-reply tasks; on the completing thread."""
        try:
            with current_span(pending.span):
                try:
                    reply = result_response(pending.request.id, done.result())
                except CancelledError:
                    reply = self._error_reply(pending, WorkerError(ErrorCode.CANCELLED, "the request was cancelled"))
                except BaseException as exc:  # noqa: BLE001 - every request gets exactly one reply
                    reply = self._error_reply(pending, exc)
                self._finish(pending, reply)
                self._after_reply(pending)
        except Exception:  # noqa: BLE001 - a future's callback must not raise
            _log.exception("completing a deferred reply failed", extra={"id": pending.request.id})
        finally:
            with self._no_deferred:
                self._deferred -= 1
                self._no_deferred.notify_all()

    def _error_reply(self, pending: _Pending, exc: BaseException) -> dict[str, Any]:
        request = pending.request
        error = classify_exception(exc)
        mark_span_error(pending.span, error.code.value, error.message)
        if error.code is ErrorCode.INTERNAL:
            _log.error("request failed", exc_info=exc, extra={"id": request.id, "method": request.method})
        return error_response(request.id, error)

    def _finish(self, pending: _Pending, reply: dict[str, Any]) -> None:
        """Not active any more, then the reply, then the span's end."""
        # Not active any more before the reply leaves: a ping right after it must see idle.
        with self._lock:
            if self._active.get(pending.request.id) is pending:
                del self._active[pending.request.id]
            if self._running is pending:
                self._running = None
        try:
            self._reply(pending, reply)
        finally:
            pending.span.end()

    # writing ------------------------------------------------------------------------------------

    def _reply(self, pending: _Pending, message: dict[str, Any]) -> None:
        with self._lock:
            if pending.replied:
                _log.error("second reply suppressed", extra={"id": pending.request.id})
                return
            pending.replied = True
        try:
            self._writer.write(message)
        except FrameTooLarge as exc:
            self._writer.write(error_response(pending.request.id, WorkerError(
                ErrorCode.RESOURCE_EXHAUSTED, f"reply too large: {exc}", retryable=False,
                details={"reason": "frame limit", "sizeBytes": exc.size, "limitBytes": exc.limit})))
        except ValueError as exc:  # NaN/Infinity or an unserialisable value in a result
            self._writer.write(error_response(pending.request.id, WorkerError(
                ErrorCode.INTERNAL, f"result is not JSON: {exc}")))
        except OSError:
            self.request_exit(0, "stdout closed")

    def _reply_error(self, pending: _Pending, error: WorkerError) -> None:
        self._reply(pending, error_response(pending.request.id, error))

    def _send_protocol_error(self, request_id: RequestId | None, rpc_code: JsonRpcCode, reason: str) -> None:
        _log.warning("protocol error from the supervisor", extra={"reason": reason})
        self._write(error_response(request_id, WorkerError(ErrorCode.INVALID_ARGUMENT, reason), rpc_code))

    def _notify(self, method: str, params: Any) -> None:
        self._write(notification(method, params))

    def _write(self, message: dict[str, Any]) -> None:
        try:
            self._writer.write(message)
        except (FrameTooLarge, ValueError):
            _log.error("dropping an unwritable message", exc_info=True, extra={"method": message.get("method")})
        except OSError:
            self.request_exit(0, "stdout closed")
