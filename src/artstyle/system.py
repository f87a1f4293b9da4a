"""Facts about the machine that several layers need (standard library only)."""

from __future__ import annotations

import functools
import os
import platform


def cpu_count() -> int:
    """CPUs this process may use: the affinity mask (a container's or taskset's limit), not
    the host's core count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


# The instruction sets that decide how ONNX Runtime runs an int8 model on x86 (and how fast).
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def is_x86_64() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64")


@functools.cache
def cpuinfo() -> dict[str, str]:
    """The first processor's fields as Linux reports them (``/proc/cpuinfo``); empty elsewhere."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if not line.strip():
                    break  # the end of the first processor's block
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``/proc/cpuinfo``); empty where Linux does not report them."""
    return frozenset(cpuinfo().get("flags", "").split())


def has_vnni() -> bool:
    """VNNI adds u8 x s8 products in 32 bits; without it int8 kernels add pairs in 16 bits."""
    return bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


def cpu_summary() -> dict:
    """The CPU model, core count and the int8-relevant instruction sets: what a figure needs."""
    flags = cpu_flags()
    return {"machine": platform.machine(), "model": cpuinfo().get("model name") or platform.processor(), "cores": cpu_count(),
            "flags": {flag: flag in flags for flag in ISA_FLAGS}, "vnni": has_vnni()}
