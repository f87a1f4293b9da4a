"""Where a benchmark ran: written into every bench/results/*.json under ``provenance``."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from artstyle.system import cpu_summary  # noqa: E402

LIBRARIES = ("numpy", "onnxruntime", "opencv-python-headless", "pillow", "simplejpeg", "torch", "timm",
             "scikit-learn", "ray", "fastapi", "uvicorn")


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()


def versions() -> dict:
    found = {"python": sys.version.split()[0]}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def provenance(argv: list[str] | None = None) -> dict:
    argv = sys.argv if argv is None else argv
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain")),
            "command": shlex.join(["python", *argv]), "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "versions": versions(), "cpu": cpu_summary(), "load_average": [round(v, 2) for v in os.getloadavg()]}
