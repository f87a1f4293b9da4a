"""``artstyle data show``: a labelled grid of random images per class."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np
import pandas as pd

from ..errors import ArtstyleError, ImageLoadError
from ..images import open_image
from .manifest import ManifestLike, load_manifest
from .scanner import find_images

THUMB_SIZE = 192  # px per tile: enough to judge style, small enough for a fast, light PNG


def _candidates(source: ManifestLike) -> tuple[pd.DataFrame, str, str]:
    """(path, label) rows to sample from, a name for the title and what the rows count. A folder
    is only listed, not scanned: showing samples must not wait for every image to be hashed."""
    if not isinstance(source, pd.DataFrame) and not Path(source).exists():
        raise ArtstyleError(f"{source}: no such data folder or manifest")
    if not isinstance(source, pd.DataFrame) and Path(source).is_dir():
        entries, _ = find_images(source)
        listing = pd.DataFrame({"path": [e.path for e in entries], "label": [e.label for e in entries]})
        return listing, str(source), "files"
    df = load_manifest(source)
    name = "DataFrame" if isinstance(source, pd.DataFrame) else str(source)
    return df.loc[df["valid"], ["path", "label"]], name, "valid images"


def _sample_images(paths: pd.Series, k: int, rng: np.random.Generator) -> list[tuple[str, object]]:
    """Up to ``k`` decodable images in random order; unreadable ones are skipped, not shown."""
    picked = []
    for path in paths.iloc[rng.permutation(len(paths))]:
        try:
            image = open_image(path, draft_size=THUMB_SIZE)
        except ImageLoadError:
            continue
        size = image.size
        image.thumbnail((THUMB_SIZE, THUMB_SIZE))
        picked.append((path, image, size))
        if len(picked) == k:
            break
    return picked


def show(
    manifest_or_dir: ManifestLike,
    output: Union[str, os.PathLike],
    *,
    per_class: int = 6,
    seed: int = 0,
) -> pd.DataFrame:
    """Save a grid of ``per_class`` random images for each class (one row per class, labelled
    with the class name and its image count) to ``output`` (PNG). Returns the shown images
    (class, path) as a DataFrame. ``seed`` makes the choice repeatable."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed (servers, CI)
    import matplotlib.pyplot as plt

    if per_class < 1:
        raise ArtstyleError(f"--per-class must be at least 1 (got {per_class})")
    candidates, name, counted = _candidates(manifest_or_dir)
    if candidates.empty:
        raise ArtstyleError(f"{name}: no readable images to show")
    rng = np.random.default_rng(seed)
    groups = {label: rows["path"] for label, rows in candidates.groupby("label", sort=True)}

    fig, axes = plt.subplots(len(groups), per_class, figsize=(1.9 * per_class + 1.2, 2.15 * len(groups)), squeeze=False)
    shown = []
    for row, (label, paths) in zip(axes, groups.items()):
        samples = _sample_images(paths, per_class, rng)
        for col, ax in enumerate(row):
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if col < len(samples):
                path, image, (w, h) = samples[col]
                ax.imshow(image)
                ax.set_xlabel(f"{w}x{h}", fontsize=8, color="0.35", labelpad=2)
                shown.append({"label": label, "path": path})
        row[0].set_ylabel(
            f"{label}\n{len(paths):,} {counted}",
            fontsize=13,
            fontweight="bold",
            rotation=0,
            ha="right",
            va="center",
            labelpad=12,
        )
    fig.suptitle(f"{per_class} random images per class (seed {seed})\n{name}", fontsize=12)
    fig.tight_layout()
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return pd.DataFrame(shown, columns=["label", "path"])
