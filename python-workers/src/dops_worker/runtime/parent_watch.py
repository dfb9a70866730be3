"""Exit when the parent process dies, even if stdin stays open (a grandchild holding it)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

import psutil

_log = logging.getLogger(__name__)
PARENT_PID_ENV = "DOPS_PARENT_PID"


def parent_pid_from_env() -> int:
    """``DOPS_PARENT_PID`` when it is a positive int, else the original ``os.getppid()``."""
    raw = os.environ.get(PARENT_PID_ENV, "").strip()
    if raw:
        try:
            pid = int(raw)
            if pid > 0:
                return pid
        except ValueError:
            pass
        _log.warning("ignoring %s=%r: not a positive integer", PARENT_PID_ENV, raw)
    return os.getppid()


class ParentWatch:
    """Polls every ``interval_s`` and calls ``on_parent_exit`` once when the parent is gone.

    The parent's create time is remembered, so a recycled pid does not look alive; a zombie is
    dead.
    """

    def __init__(self, pid: int, on_parent_exit: Callable[[], None], interval_s: float = 1.0) -> None:
        self.pid = pid
        self._on_exit = on_parent_exit
        self._interval = interval_s
        self._stop = threading.Event()
        self._create_time = self._read_create_time()
        self._thread = threading.Thread(target=self._run, name="parent-watch", daemon=True)

    def _read_create_time(self) -> float | None:
        try:
            return psutil.Process(self.pid).create_time()
        except (psutil.Error, OSError):
            return None

    def parent_alive(self) -> bool:
        try:
            process = psutil.Process(self.pid)
            if self._create_time is not None and process.create_time() != self._create_time:
                return False
            return process.status() != psutil.STATUS_ZOMBIE
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return False
        except (psutil.Error, OSError):
            return True  # access denied and the like: it exists

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            if not self.parent_alive():
                _log.warning("parent process %d is gone; exiting", self.pid)
                self._on_exit()
                return
