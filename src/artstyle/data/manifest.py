"""The manifest: one CSV row per image file, plus ``classes.json`` (class name -> index) beside it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Union

import pandas as pd

from ..errors import ArtstyleError

MANIFEST_COLUMNS = [
    "path",
    "label",
    "label_idx",
    "width",
    "height",
    "format",
    "mode",
    "bytes",
    "sha256",
    "phash",
    "valid",
    "error",
    "split",
    "group",
]
SPLITS = ("train", "val", "test")
CLASSES_FILE = "classes.json"

_TEXT_COLUMNS = ["path", "label", "format", "mode", "sha256", "phash", "error", "split", "group"]
_INT_COLUMNS = ["label_idx", "width", "height", "bytes"]

ManifestLike = Union[str, os.PathLike, pd.DataFrame]


def class_indices(labels) -> dict[str, int]:
    """Class name -> index in sorted name order, the same convention as Keras' ``class_indices``
    and torchvision's ``ImageFolder``, so indices do not depend on the order files were found."""
    return class_index(sorted(set(labels)))


def class_index(classes) -> dict[str, int]:
    """Class name -> its position in ``classes`` (a model's class list): the one map from labels
    to the targets every part of training, evaluation and the manifest uses."""
    return {name: i for i, name in enumerate(classes)}


def write_manifest(df: pd.DataFrame, output: Union[str, os.PathLike]) -> Path:
    """Write ``df`` as a manifest CSV and ``classes.json`` beside it; returns the CSV path."""
    output = Path(output)
    if output.is_dir():
        raise ArtstyleError(f"{output} is a directory; give a file name such as {output / 'manifest.csv'}")
    output.parent.mkdir(parents=True, exist_ok=True)
    df[MANIFEST_COLUMNS].to_csv(output, index=False)
    write_classes(classes_from_manifest(df), output.parent)
    return output


def write_classes(classes: dict[str, int], directory: Union[str, os.PathLike]) -> Path:
    path = Path(directory) / CLASSES_FILE
    path.write_text(json.dumps(classes, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def classes_from_manifest(df: pd.DataFrame) -> dict[str, int]:
    """The label -> label_idx mapping the manifest itself records."""
    pairs = df[["label", "label_idx"]].drop_duplicates().sort_values("label_idx")
    return {str(label): int(idx) for label, idx in zip(pairs["label"], pairs["label_idx"])}


def read_manifest(path: Union[str, os.PathLike]) -> pd.DataFrame:
    """Read a manifest CSV written by :func:`artstyle.data.scan` (or a split CSV) with the right
    dtypes: ``valid`` bool, counts int, text columns str with missing values as ``''``."""
    path = Path(path)
    if not path.is_file():
        raise ArtstyleError(f"{path}: no such manifest file (create one with: artstyle data scan DATA_DIR -o {path})")
    try:
        # keep_default_na=False: a file called "NA.jpg" or an empty error must stay a string.
        df = pd.read_csv(path, dtype={c: str for c in _TEXT_COLUMNS}, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ArtstyleError(f"{path}: not a readable CSV manifest ({exc})") from None
    return normalize_manifest(df, source=str(path))


def normalize_manifest(df: pd.DataFrame, source: str = "manifest") -> pd.DataFrame:
    """Check the columns and coerce dtypes (also for a DataFrame a user built by hand)."""
    df = df.copy()
    for optional in ("split", "group"):  # manifests from before these columns existed
        if optional not in df.columns:
            df[optional] = ""
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise ArtstyleError(
            f"{source}: not an artstyle manifest (missing columns: {', '.join(missing)}); "
            "create one with: artstyle data scan DATA_DIR -o manifest.csv"
        )
    for col in _TEXT_COLUMNS:
        df[col] = df[col].fillna("").astype(str)
    for col in _INT_COLUMNS:
        df[col] = pd.to_numeric(df[col], errors="coerce").fillna(0).astype("int64")
    df["valid"] = df["valid"].map(_as_bool).astype(bool)
    df["split"] = df["split"].map(normalize_split_name)
    return df[MANIFEST_COLUMNS + [c for c in df.columns if c not in MANIFEST_COLUMNS]]


def _as_bool(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value) if value == value else False  # NaN -> False


_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}


def normalize_split_name(name: str) -> str:
    """'valid'/'validation' -> 'val' etc.; '' stays '' (not pre-split)."""
    key = str(name).strip().lower()
    if not key:
        return ""
    if key not in _SPLIT_ALIASES:
        raise ArtstyleError(f"unknown split name {name!r}: expected train, val (valid, validation) or test")
    return _SPLIT_ALIASES[key]


def is_split_folder_name(name: str) -> bool:
    return name.strip().lower() in _SPLIT_ALIASES


def read_classes(path_or_dir: Union[str, os.PathLike]) -> dict[str, int]:
    """Read ``classes.json``, given the file, its directory, or a manifest CSV beside it."""
    path = Path(path_or_dir)
    if path.is_dir():
        path = path / CLASSES_FILE
    elif path.suffix.lower() != ".json":
        path = path.parent / CLASSES_FILE
    try:
        classes = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtstyleError(
            f"{path}: no classes.json here (artstyle data scan writes it beside the manifest)"
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtstyleError(f"{path}: cannot read classes ({exc})") from None
    if not isinstance(classes, dict) or not all(isinstance(v, int) for v in classes.values()):
        raise ArtstyleError(f"{path}: expected a JSON object of class name -> index")
    return {str(k): int(v) for k, v in sorted(classes.items(), key=lambda kv: kv[1])}


def load_manifest(manifest: ManifestLike) -> pd.DataFrame:
    """A manifest given as a DataFrame or a CSV path."""
    if isinstance(manifest, pd.DataFrame):
        return normalize_manifest(manifest, source="DataFrame")
    return read_manifest(manifest)
