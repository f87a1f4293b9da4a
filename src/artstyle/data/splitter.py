"""``artstyle data split``: stratified, reproducible train/val/test split that never lets a
duplicate or near-duplicate of a test image sit in train."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Union

import numpy as np
import pandas as pd

from ..errors import ArtstyleError
from .duplicates import DEFAULT_PHASH_THRESHOLD, duplicate_groups
from .manifest import (
    MANIFEST_COLUMNS,
    SPLITS,
    ManifestLike,
    classes_from_manifest,
    load_manifest,
    read_manifest,
    write_classes,
)


class SplitResult(dict):
    """``{'train': df, 'val': df, 'test': df}`` plus ``.report``: what was dropped, grouped, kept."""

    report: dict


def _check_fractions(val: float, test: float) -> dict[str, float]:
    if not (0 <= val < 1 and 0 <= test < 1) or val + test >= 1:
        raise ArtstyleError(f"--val {val} and --test {test} must each be in [0, 1) and leave room for train (sum < 1)")
    return {"train": 1.0 - val - test, "val": val, "test": test}


def _group_table(labels: pd.Series, groups: np.ndarray) -> pd.DataFrame:
    """One row per duplicate group: its size and its class. A group whose members carry different
    labels (the same picture filed under two classes) counts for its most common label."""
    members = pd.DataFrame({"group": groups, "label": labels.to_numpy()})
    counts = members.value_counts(["group", "label"]).reset_index(name="n")
    main_label = counts.sort_values(["group", "n", "label"], ascending=[True, False, True]).drop_duplicates("group")
    sizes = members.groupby("group").size().rename("size")
    return main_label.set_index("group")[["label"]].join(sizes)


def _assign_class_groups(sizes: pd.Series, fractions: dict[str, float], rng: np.random.Generator, label: str):
    """Assign one class's duplicate groups to splits, whole groups only.

    sklearn's group splitters make k equal folds and do not promise a class in every split, so:
    first the smallest groups seed each non-train split (every class must appear everywhere),
    then the rest go, largest first in random order, to the split furthest below its target.
    """
    wanted = [s for s in SPLITS if fractions[s] > 0]
    if len(sizes) < len(wanted):
        raise ArtstyleError(
            f"class '{label}' is too small to split: {int(sizes.sum())} valid images "
            f"({len(sizes)} distinct after grouping duplicates) cannot cover {', '.join(wanted)}; "
            f"it needs at least {len(wanted)} distinct images (add images, or use --val 0 / --test 0)"
        )
    shuffled = sizes.iloc[rng.permutation(len(sizes))]
    order = shuffled.sort_values(ascending=False, kind="stable")  # big groups first, ties random
    target = {s: fractions[s] * sizes.sum() for s in wanted}
    filled = dict.fromkeys(wanted, 0)
    assignment: dict[int, str] = {}
    seeds = [s for s in wanted if s != "train"]
    for split_name, (group, size) in zip(seeds, reversed(list(order.items()))):
        assignment[group] = split_name
        filled[split_name] += size
    for group, size in order.items():
        if group in assignment:
            continue
        neediest = max(wanted, key=lambda s: target[s] - filled[s])
        assignment[group] = neediest
        filled[neediest] += size
    return assignment


def source_groups(df: pd.DataFrame) -> np.ndarray:
    """Integer id of each row's ``group`` (its source); a row without one is a group of its own."""
    if "group" not in df.columns or (df["group"] == "").all():
        raise ArtstyleError(
            "the manifest has no groups: lay the data out as CLASS/SOURCE/file.jpg, or scan with "
            "--group-by REGEX, to keep whole sources together"
        )
    keys = df["group"].where(df["group"] != "", "\0" + df["path"])
    return pd.factorize(keys)[0]


def merged_groups(*labelings: np.ndarray) -> np.ndarray:
    """Connected components of several groupings of the same rows: two rows share a result
    group when any labeling puts them together, directly or through a chain."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    offsets = np.cumsum([0] + [int(g.max()) + 1 for g in labelings])
    nodes = [g + off for g, off in zip(labelings, offsets[:-1])]
    # Each row links its node in the first labeling to its node in every other one.
    rows = np.concatenate([nodes[0]] * (len(nodes) - 1))
    cols = np.concatenate(nodes[1:])
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(offsets[-1], offsets[-1]))
    _, component = connected_components(graph, directed=False)
    return pd.factorize(component[nodes[0]])[0]


def split_groups(df: pd.DataFrame, phash_threshold: int, by_group: bool) -> np.ndarray:
    """The units a split keeps whole: duplicate groups, merged with source groups when asked."""
    groups = duplicate_groups(df, phash_threshold)
    return merged_groups(groups, source_groups(df)) if by_group else groups


def assign_splits(df: pd.DataFrame, *, val: float, test: float, seed: int, phash_threshold: int,
                  by_group: bool = False) -> pd.Series:
    """'train'/'val'/'test' per row of the valid-only ``df``, duplicates (and, ``by_group``,
    whole sources) kept together."""
    fractions = _check_fractions(val, test)
    groups = split_groups(df, phash_threshold, by_group)
    table = _group_table(df["label"], groups)
    rng = np.random.default_rng(seed)
    assignment: dict[int, str] = {}
    for label in sorted(table["label"].unique()):
        sizes = table.loc[table["label"] == label, "size"].sort_index()
        assignment.update(_assign_class_groups(sizes, fractions, rng, label))
    result = pd.Series([assignment[g] for g in groups], index=df.index, name="split")
    result.attrs["groups"] = groups
    return result


def _leaking_groups(df: pd.DataFrame, threshold: int) -> int:
    """How many duplicate groups straddle two splits of an existing (pre-split) manifest."""
    groups = duplicate_groups(df, threshold)
    return int((pd.Series(df["split"].to_numpy()).groupby(groups).nunique() > 1).sum())


def split(
    manifest_or_df: ManifestLike,
    output_dir: Union[str, os.PathLike, None] = None,
    *,
    val: float = 0.15,
    test: float = 0.15,
    seed: int = 42,
    phash_threshold: int = DEFAULT_PHASH_THRESHOLD,
    by_group: bool = False,
) -> SplitResult:
    """Split a manifest into ``{'train', 'val', 'test'}`` DataFrames (manifest columns).

    - Invalid rows are dropped (counted in ``result.report['dropped_invalid']``).
    - Stratified by class and reproducible for a given ``seed`` (independent of row order).
    - Exact duplicates (sha256) and near duplicates (phash distance <= ``phash_threshold``) are
      grouped, transitively, and each group lands in one split: nothing leaks from train to test.
    - ``by_group``: whole groups (the manifest's ``group`` column: sources) land in one split, so
      val and test measure sources the model never saw. Fractions then hold only roughly.
    - Every class appears in every split with a non-zero fraction, or ArtstyleError names the class.
    - A manifest of pre-split folders (non-empty ``split`` column) keeps its split; groups that
      straddle its splits are counted in ``report['leaking_groups']``.

    With ``output_dir``: writes train.csv, val.csv, test.csv, classes.json and split.json (report).
    """
    df = load_manifest(manifest_or_df)
    classes = classes_from_manifest(df)
    valid = df[df["valid"]].sort_values("path", kind="stable").reset_index(drop=True)
    report = {"dropped_invalid": int((~df["valid"]).sum()), "seed": seed, "phash_threshold": phash_threshold,
              "by_group": by_group}
    if valid.empty:
        raise ArtstyleError("no valid images in the manifest to split")

    presplit = valid["split"] != ""
    if presplit.any() and not presplit.all():
        raise ArtstyleError(
            f"the manifest has a split for {int(presplit.sum())} rows but not for {int((~presplit).sum())}; "
            "clear the split column to re-split, or fill it in for every row"
        )
    if presplit.all():
        report.update(mode="kept existing split", leaking_groups=_leaking_groups(valid, phash_threshold))
    else:
        assigned = assign_splits(valid, val=val, test=test, seed=seed, phash_threshold=phash_threshold,
                                 by_group=by_group)
        valid["split"] = assigned.to_numpy()
        groups = assigned.attrs["groups"]
        sizes = np.bincount(groups)
        report.update(
            mode="new split",
            val=val,
            test=test,
            groups=int(len(sizes)),
            images_in_duplicate_groups=int(sizes[sizes > 1].sum()),
        )

    result = SplitResult({name: valid[valid["split"] == name].reset_index(drop=True) for name in SPLITS})
    if by_group:
        report["groups_per_split"] = {name: sorted(set(part["group"]) - {""}) for name, part in result.items()}
    report["counts"] = {
        name: {str(k): int(v) for k, v in part["label"].value_counts().sort_index().items()}
        for name, part in result.items()
    }
    labels = set(valid["label"])
    report["classes_missing"] = {
        name: sorted(labels - set(part["label"]))
        for name, part in result.items()
        if 0 < part["label"].nunique() < len(labels)
    }  # only possible for a kept, pre-split layout: a new split puts every class everywhere
    result.report = report
    if output_dir is not None:
        _write_split(result, classes, Path(output_dir))
    return result


def _write_split(result: SplitResult, classes: dict[str, int], output_dir: Path) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise ArtstyleError(f"{output_dir}: exists and is not a folder")
    output_dir.mkdir(parents=True, exist_ok=True)
    for name, part in result.items():
        part[MANIFEST_COLUMNS].to_csv(output_dir / f"{name}.csv", index=False)
    write_classes(classes, output_dir)
    (output_dir / "split.json").write_text(json.dumps(result.report, indent=2) + "\n", encoding="utf-8")


def read_split(split_dir: Union[str, os.PathLike]) -> dict[str, pd.DataFrame]:
    """Read train.csv, val.csv and test.csv written by :func:`split`."""
    return {name: read_manifest(Path(split_dir) / f"{name}.csv") for name in SPLITS}
