import threading
import time

import pytest

from dops_worker.protocol.errors import ErrorCode, WorkerError
from dops_worker.runtime.cancellation import CancelToken


def test_fresh_token_is_not_cancelled():
    token = CancelToken()
    assert not token.is_cancelled and token.reason is None
    token.raise_if_cancelled()


def test_cancel_raises_cancelled_and_first_reason_wins():
    token = CancelToken()
    token.cancel()
    token.cancel(ErrorCode.DEADLINE_EXCEEDED)
    with pytest.raises(WorkerError) as info:
        token.raise_if_cancelled()
    assert info.value.code is ErrorCode.CANCELLED


def test_deadline_cancels_with_deadline_exceeded():
    now = [100.0]
    token = CancelToken(deadline=105.0, clock=lambda: now[0])
    assert not token.is_cancelled
    now[0] = 105.0
    with pytest.raises(WorkerError) as info:
        token.raise_if_cancelled()
    assert info.value.code is ErrorCode.DEADLINE_EXCEEDED
    token.cancel()
    assert token.reason is ErrorCode.DEADLINE_EXCEEDED


def test_wait_wakes_early_on_cancel_from_another_thread():
    token = CancelToken()
    threading.Timer(0.05, token.cancel).start()
    started = time.monotonic()
    assert token.wait(5.0) is True
    assert time.monotonic() - started < 1.0


def test_wait_is_capped_by_the_deadline():
    token = CancelToken(deadline=time.time() + 0.05)
    started = time.monotonic()
    assert token.wait(5.0) is True
    assert time.monotonic() - started < 1.0
    assert token.reason is ErrorCode.DEADLINE_EXCEEDED


def test_wait_without_cancel_sleeps_the_full_time():
    token = CancelToken()
    started = time.monotonic()
    assert token.wait(0.05) is False
    assert time.monotonic() - started >= 0.045
