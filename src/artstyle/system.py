"""Facts about the machine that several layers need (standard library only)."""

from __future__ import annotations

import os


def cpu_count() -> int:
    """CPUs this process may use: the affinity mask (a container's or taskset's limit), not
    the host's core count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1
