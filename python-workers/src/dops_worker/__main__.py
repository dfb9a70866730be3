"""``python -m dops_worker``: guard stdout first, then everything else."""

# Order matters: nothing may be imported before stdout is guarded, or a library that prints at
# import time (or native code writing to fd 1) would corrupt the protocol channel.
from dops_worker.runtime.stdio import guard_stdout

_frames_in, _frames_out = guard_stdout()

from dops_worker.runtime.main import run  # noqa: E402

run(_frames_in, _frames_out)
