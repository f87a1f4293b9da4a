"""``artstyle data scan``: walk a folder of class subfolders and describe every image in a manifest."""

from __future__ import annotations

import functools
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Union

import pandas as pd
from tqdm import tqdm

from ..errors import ArtstyleError
from ..images import DEFAULT_MAX_PIXELS, is_image_file, resolve_link_stub, walk_images
from ..system import cpu_count
from .measure import inspect_file
from .manifest import (
    MANIFEST_COLUMNS,
    ManifestLike,
    class_indices,
    is_split_folder_name,
    load_manifest,
    normalize_split_name,
    read_manifest,
    write_manifest,
)

# Below this many files a process pool costs more (start-up, pickling) than it saves.
SERIAL_BELOW = 100


@dataclass(frozen=True)
class ImageEntry:
    """One image file found in a data folder."""

    path: str  # absolute, symlinks kept as the user sees them
    label: str
    split: str  # '' when the folder is not pre-split
    group: str = ""  # where the image came from (source folder), for leave-groups-out validation


available_cpus = cpu_count  # the one helper, under the name this module's callers know


def _visible_subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.is_dir())


def _class_folders(data_dir: Path) -> list[tuple[str, Path]]:
    """(split, class folder) pairs: ``data_dir/<class>/`` or ``data_dir/<split>/<class>/``."""
    top = _visible_subdirs(data_dir)
    split_dirs = [d for d in top if is_split_folder_name(d.name)]
    if split_dirs and len(split_dirs) < len(top):
        others = ", ".join(d.name for d in top if d not in split_dirs)
        raise ArtstyleError(
            f"{data_dir}: mixes split folders ({', '.join(d.name for d in split_dirs)}) with class folders "
            f"({others}); use either DATA_DIR/<class>/ or DATA_DIR/<train|val|test>/<class>/"
        )
    if split_dirs:
        return [(normalize_split_name(s.name), c) for s in split_dirs for c in _visible_subdirs(s)]
    return [("", c) for c in top]


def compile_group_pattern(group_by: Optional[str]):
    """``--group-by REGEX``: searched in each path relative to DATA_DIR; its first capture group
    (or the whole match) names the image's group."""
    if not group_by:
        return None
    try:
        return re.compile(group_by)
    except re.error as exc:
        raise ArtstyleError(f"--group-by {group_by!r}: not a valid regular expression ({exc})") from None


def group_of(relative: str, pattern=None) -> str:
    """The group of an image at ``relative`` (``CLASS/SOURCE/.../file`` below the class folders):
    by default the first subfolder under its class folder, '' for a file directly in it."""
    if pattern is not None:
        match = pattern.search(relative)
        return (match.group(1) if match and pattern.groups else match.group(0) if match else "") or ""
    parts = relative.split("/")
    return parts[1] if len(parts) > 2 else ""


def find_images(data_dir: Union[str, os.PathLike], group_by: Optional[str] = None) -> tuple[list[ImageEntry], list[str]]:
    """List the image files of a class-per-folder dataset without opening them.

    Returns the entries (sorted) and notes for the user (empty class folders, loose files...).
    Each entry's ``group`` is its source folder, or what ``group_by`` (a regex) finds in its path.
    Link stubs (symlinks stored as text files) are followed to their target.
    Raises ArtstyleError when the folder is missing or has no class folders with images.
    """
    pattern = compile_group_pattern(group_by)
    data_dir = Path(data_dir).expanduser().absolute()
    if not data_dir.exists():
        raise ArtstyleError(f"{data_dir}: no such folder")
    if not data_dir.is_dir():
        raise ArtstyleError(f"{data_dir}: is a file; expected a folder with one subfolder per class")
    notes: list[str] = []
    loose = [p.name for p in data_dir.iterdir() if p.is_file() and is_image_file(p)]
    folders = _class_folders(data_dir)
    if not folders:
        hint = f"; {len(loose)} images lie directly in it, move them into class folders" if loose else ""
        raise ArtstyleError(
            f"{data_dir}: no class folders found (expected one subfolder per class, "
            f"e.g. {data_dir / 'cat'}/*.jpg{hint})"
        )
    if loose:
        notes.append(f"{data_dir}: ignored {len(loose)} images outside class folders (e.g. {loose[0]})")

    entries: list[ImageEntry] = []
    for split, folder in folders:
        paths = walk_images(folder, notes)
        if not paths:
            where = f"{split}/{folder.name}" if split else folder.name
            notes.append(f"{folder}: class folder '{where}' has no images; ignored")
        for p in paths:
            relative = Path(os.path.relpath(p, folder.parent)).as_posix()  # CLASS/...
            group = group_of(relative if pattern is None else Path(os.path.relpath(p, data_dir)).as_posix(), pattern)
            entries.append(ImageEntry(os.path.abspath(resolve_link_stub(p)), folder.name, split, group))
    if not entries:
        raise ArtstyleError(
            f"{data_dir}: no images found in its class folders ({', '.join(f.name for _, f in folders)})"
        )
    return sorted(entries, key=lambda e: (e.split, e.label, e.path)), notes


def _inspect_all(paths: list[str], workers: int, max_pixels: Optional[int], progress: bool) -> list[dict]:
    inspect = functools.partial(inspect_file, max_pixels=max_pixels)
    bar = functools.partial(tqdm, total=len(paths), unit="img", desc="scan", disable=not progress)
    if workers <= 1 or len(paths) < SERIAL_BELOW:
        return list(bar(map(inspect, paths)))
    # Big chunks amortise inter-process traffic; at least ~8 per worker keep the progress bar moving
    # and balance the load when some chunks hold larger images.
    chunksize = max(1, min(256, len(paths) // (workers * 8)))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(bar(pool.map(inspect, paths, chunksize=chunksize)))


def build_manifest(entries: Iterable[ImageEntry], rows: list[dict]) -> pd.DataFrame:
    """Join the folder listing (label, split) with the measured rows into manifest columns."""
    entries = list(entries)
    df = pd.DataFrame(rows)
    df["label"] = [e.label for e in entries]
    df["split"] = [e.split for e in entries]
    df["group"] = [e.group for e in entries]
    df["label_idx"] = df["label"].map(class_indices(df["label"])).astype("int64")
    return df[MANIFEST_COLUMNS]


def scan(
    data_dir: Union[str, os.PathLike],
    output: Union[str, os.PathLike, None] = None,
    *,
    workers: Optional[int] = None,
    max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
    progress: bool = True,
    group_by: Optional[str] = None,
    engine: str = "local",
) -> pd.DataFrame:
    """Scan ``data_dir`` (one subfolder per class, or ``train/ val/ test/`` each holding class
    folders) and return the manifest as a DataFrame, one row per image file:

    ``path`` (absolute), ``label`` (class folder), ``label_idx`` (sorted class order), ``width``,
    ``height`` (as stored, before EXIF rotation), ``format``, ``mode``, ``bytes``, ``sha256``,
    ``phash`` (imagehash.phash hex), ``valid``, ``error`` (why a file cannot be read), ``split``
    ('train'/'val'/'test' for pre-split folders, else ''), ``group`` (the source folder: the first
    subfolder under the class folder, or what the ``group_by`` regex finds in the path relative to
    ``data_dir``; '' when there is none). Groups drive leave-sources-out validation
    (``split(by_group=True)``, :func:`artstyle.engine.crossval`).

    Unreadable files stay in the manifest with ``valid=False``. With ``output``, the CSV is
    written there and ``classes.json`` beside it. ``workers`` defaults to the usable CPUs.
    ``engine="ray"`` measures the files in Ray tasks on the connected cluster (``ray.init``
    first; every node must see the files at the same paths), with the same per-file function.
    Notes for the user (ignored folders...) are in ``df.attrs['notes']``.
    """
    entries, notes = find_images(data_dir, group_by)
    started = time.perf_counter()
    paths = [e.path for e in entries]
    if engine == "ray":
        from ._ray_scan import inspect_files  # imports Ray: only on this path

        rows = inspect_files(paths, max_pixels, progress)
    elif engine == "local":
        rows = _inspect_all(paths, workers or available_cpus(), max_pixels, progress)
    else:
        raise ArtstyleError(f"unknown engine {engine!r}; expected 'local' or 'ray'")
    df = build_manifest(entries, rows)
    df.attrs["notes"] = notes
    df.attrs["seconds"] = time.perf_counter() - started
    if output is not None:
        write_manifest(df, output)
    return df


def manifest_or_scan(source: ManifestLike, **scan_kwargs) -> pd.DataFrame:
    """For commands that take 'a data folder or a manifest': scan folders, read CSV files.
    (Here, beside the scanner, so that the manifest module need not import the scanner that
    imports it.)"""
    if isinstance(source, pd.DataFrame):
        return load_manifest(source)
    path = Path(source)
    if path.is_dir():
        return scan(path, **scan_kwargs)
    if not path.exists():
        raise ArtstyleError(f"{path}: no such data folder or manifest")
    return read_manifest(path)
