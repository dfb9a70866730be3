"""Test helper (not a fixture for the supervisor): the real worker plus a method that prints.

``test.noise`` writes through every path a library can use to reach stdout: print, sys.stdout,
sys.__stdout__, file descriptor 1, C printf and a child process. All of it must land on stderr.
"""

from dops_worker.runtime.stdio import guard_stdout

frames_in, frames_out = guard_stdout()

import ctypes  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

from dops_worker.runtime.main import run  # noqa: E402
from dops_worker.runtime.registry import registry  # noqa: E402

print("NOISE-import-time print")


@registry.method("test.noise", requires_init=False)
def noise(params, ctx):
    print("NOISE-print")
    sys.stdout.write("NOISE-sys.stdout\n")
    sys.__stdout__.write("NOISE-sys.__stdout__\n")
    sys.__stdout__.flush()
    os.write(1, b"NOISE-fd1\n")
    libc = ctypes.CDLL(None)
    libc.printf(b"NOISE-printf\n")
    libc.fflush(None)
    subprocess.run([sys.executable, "-c", "print('NOISE-child')"], check=True)
    return {"noisy": True}


run(frames_in, frames_out)
