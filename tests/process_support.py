"""Killing a command line process at a chosen moment, as ``kill -9`` would: the crash tests of
``train --resume`` (test_train) and ``sort`` (test_sort)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest


def kill_when(proc: subprocess.Popen, condition, timeout: float = 300, *, may_finish: bool = False) -> bool:
    """SIGKILL ``proc`` the moment ``condition()`` holds and return True. A process that ends
    first fails the test, or with ``may_finish`` (when it succeeded) returns False."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        if proc.poll() is not None:
            if not (may_finish and proc.returncode == 0):
                pytest.fail(f"the process ended before the kill point: {proc.stderr.read()[-2000:]}")
            return False
        time.sleep(0.0005)
    pytest.fail("the process did not reach the kill point in time")
