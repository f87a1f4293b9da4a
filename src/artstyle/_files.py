"""Small file conventions shared by the torch-free core and the engine: a file's sha256 and its
check against a model card, and where a training run keeps its weights. Standard library only."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .errors import ArtstyleError

# Where a run folder's weights are, in order: RUN/weights/best.safetensors (a training run), or
# best.safetensors directly in the folder given.
RUN_WEIGHTS = ("weights/best.safetensors", "best.safetensors")


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of a file, read in 1 MB pieces (model files are tens of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_sha256(content: bytes | Path, expected: str, path: str | os.PathLike, remedy: str = "") -> None:
    """Refuse a file (its bytes, or the file at a path) that does not hash to the sha256 its card
    records: a truncated download or a tampered file fails here, with a clear message, instead
    of deep inside whatever reads it next."""
    actual = hashlib.sha256(content).hexdigest() if isinstance(content, bytes) else sha256_file(content)
    if actual != expected:
        raise ArtstyleError(f"{path}: sha256 does not match its model card; the file is truncated, corrupted "
                            f"or was modified{remedy}")


def run_weights(folder: str | os.PathLike) -> Path | None:
    """The weights of the training run in ``folder`` (see ``RUN_WEIGHTS``), or None."""
    return next((Path(folder) / name for name in RUN_WEIGHTS if (Path(folder) / name).is_file()), None)


def fsync(path: str | os.PathLike) -> None:
    """Flush a file's or a folder's (its entries') pending writes to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
