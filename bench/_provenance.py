"""Where a benchmark ran: every bench script writes its results through ``write_results``, which
adds a ``provenance`` object (commit, command, library versions, CPU and its instruction sets,
load). ``bench/report.py`` quotes only result files that carry one.

Imported by the bench scripts as ``from _provenance import write_results`` (they run as scripts,
so this folder is on their path). Standard library and artstyle.system only; it imports no library to learn its version.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from artstyle.system import cpu_summary  # noqa: E402  (standard library only)

# Taken when the bench script imports this module, i.e. as it starts: a busy machine at the
# start explains a slow run better than the load the run itself caused.
_LOAD_AT_START = os.getloadavg()
_STARTED = time.time()

# Distribution names, in the order they are reported; each library under the first name installed.
LIBRARIES = {
    "numpy": ("numpy",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "opencv": ("opencv-python-headless", "opencv-python", "opencv-contrib-python-headless", "opencv-contrib-python"),
    "pillow": ("pillow",),
    "simplejpeg": ("simplejpeg",),
    "torch": ("torch",),
    "timm": ("timm",),
    "ray": ("ray",),
}

def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def git_state() -> dict:
    """The commit and whether the tree differed from it (``git status --porcelain``, untracked
    files included), with the paths that differed."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain")
    changed = [line[3:] for line in (status or "").splitlines() if line.strip()]
    return {"commit": commit.strip() if commit else None,
            "dirty": bool(changed) if status is not None else None,
            "changed_files": changed[:50]}


def command_line(argv: list[str]) -> str:
    """The command as typed from the repository root: ``python bench/x.py --flag value``."""
    script = Path(argv[0])
    try:
        script = script.resolve().relative_to(REPO)
    except ValueError:
        pass
    return shlex.join(["python", str(script), *argv[1:]])


def library_versions() -> dict:
    versions = {"python": platform.python_version()}
    for name, distributions in LIBRARIES.items():
        for distribution in distributions:
            try:
                versions[name] = metadata.version(distribution)
                break
            except metadata.PackageNotFoundError:
                continue
    return versions


def cpu() -> dict:
    """The CPU model, the cores this process may use, and the instruction sets that matter."""
    summary = cpu_summary()
    return {"model": summary["model"], "cpu_count": os.cpu_count(), "usable_cores": summary["cores"],
            "flags": summary["flags"], "vnni": summary["vnni"]}


def provenance(argv: list[str] | None = None) -> dict:
    argv = sys.argv if argv is None else argv
    return {"git": git_state(), "command": command_line(argv), "versions": library_versions(), "cpu": cpu(),
            "load_average_at_start": [round(x, 2) for x in _LOAD_AT_START],
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "started_utc": datetime.fromtimestamp(_STARTED, timezone.utc).isoformat(timespec="seconds"),
            "written_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def write_results(path: str | Path, results: dict, argv: list[str] | None = None) -> Path:
    """``results`` with its ``provenance``, as indented JSON at ``path`` (folders made)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**results, "provenance": provenance(argv)}, indent=2) + "\n", encoding="utf-8")
    return path
