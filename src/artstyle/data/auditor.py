"""``artstyle data audit``: what is wrong with a dataset before a model learns from it.

Invalid files, duplicates (within a class: wasted and leak-prone; across classes: likely label
errors), tiny images, and the shortcut check: can image size, file size or format alone predict
the class? If so, a network can score well without learning style at all.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Union

import numpy as np
import pandas as pd

from ..errors import ArtstyleError
from ..config import TINY_SIDE
from .duplicates import DEFAULT_PHASH_THRESHOLD, duplicate_groups, near_duplicate_pairs
from .manifest import ManifestLike, manifest_or_scan, write_manifest

METADATA_FEATURES = ["width", "height", "aspect", "bytes", "format", "mode"]
MARKDOWN_LIST_LIMIT = 40  # rows per list in audit.md; the CSV files hold everything
# A metadata-only model beating the majority baseline by this much is a shortcut worth a warning.
SHORTCUT_WARNING_GAP = 0.10


# --- findings ---------------------------------------------------------------------------------


def duplicate_pairs(valid: pd.DataFrame, threshold: int = DEFAULT_PHASH_THRESHOLD) -> pd.DataFrame:
    """Every pair of valid images that are identical (``kind='exact'``, same sha256) or look the
    same (``'near'``, phash distance <= threshold), and whether they share a class (``scope``)."""
    pairs = near_duplicate_pairs(valid, threshold)
    a, b = valid.iloc[pairs["i"]].reset_index(drop=True), valid.iloc[pairs["j"]].reset_index(drop=True)
    return pd.DataFrame(
        {
            "kind": np.where(a["sha256"] == b["sha256"], "exact", "near"),
            "scope": np.where(a["label"] == b["label"], "within class", "across classes"),
            "distance": pairs["distance"],
            "label_a": a["label"],
            "path_a": a["path"],
            "label_b": b["label"],
            "path_b": b["path"],
        }
    )


def metadata_features(valid: pd.DataFrame) -> pd.DataFrame:
    """What a model could read without looking at the picture: size, aspect, bytes, format, mode."""
    return pd.DataFrame(
        {
            "width": valid["width"].to_numpy(),
            "height": valid["height"].to_numpy(),
            "aspect": (valid["width"] / valid["height"].clip(lower=1)).to_numpy(),
            "bytes": valid["bytes"].to_numpy(),
            "format": pd.Categorical(valid["format"]),
            "mode": pd.Categorical(valid["mode"]),
        }
    )


def shortcut_check(valid: pd.DataFrame, *, groups=None, folds: int = 5, seed: int = 0) -> dict:
    """Cross-validated accuracy of a gradient-boosted tree model that sees only metadata, against
    the majority-class baseline, plus the accuracy of each metadata feature on its own (which
    shortcut) and per-class recall (which class gives itself away). Folds keep duplicate
    ``groups`` together so copies cannot inflate the score."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict, cross_val_score
    from sklearn.tree import DecisionTreeClassifier
    from threadpoolctl import threadpool_limits

    y = valid["label"].to_numpy()
    counts = pd.Series(y).value_counts()
    if len(counts) < 2:
        return {"skipped": "needs at least two classes with valid images"}
    folds = min(folds, int(counts.min()))
    if folds < 2:
        return {"skipped": f"class '{counts.idxmin()}' has a single valid image; cross-validation needs two"}
    groups = np.arange(len(y)) if groups is None else groups
    cv = list(StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed).split(valid, y, groups))
    X = metadata_features(valid)
    model = HistGradientBoostingClassifier(
        max_iter=60, max_leaf_nodes=15, categorical_features="from_dtype", random_state=seed
    )
    # On one feature a single tree already finds the best thresholds (and category sets), in
    # milliseconds; boosting would only repeat that 30 more times.
    one_feature_model = DecisionTreeClassifier(min_samples_leaf=0.005, random_state=seed)
    codes = X.apply(lambda col: col.cat.codes if isinstance(col.dtype, pd.CategoricalDtype) else col)
    # One OpenMP thread: on a small, shared machine the tree builder's threads spin against each
    # other and a 0.5 s fit took 9 s. These models are tiny; one thread is the fast choice.
    with threadpool_limits(limits=1, user_api="openmp"):
        predicted = cross_val_predict(model, X, y, cv=cv)
    single = {f: float(cross_val_score(one_feature_model, codes[[f]], y, cv=cv).mean()) for f in METADATA_FEATURES}
    return {
        "classifier": "HistGradientBoostingClassifier(max_iter=60, max_leaf_nodes=15) on metadata only; "
        "single features: DecisionTreeClassifier(min_samples_leaf=0.5%)",
        "features": METADATA_FEATURES,
        "folds": folds,
        "metadata_accuracy": float((predicted == y).mean()),
        "majority_baseline": float(counts.max() / counts.sum()),
        "majority_class": str(counts.idxmax()),
        "single_feature_accuracy": single,
        "per_class_recall": {str(c): float((predicted[y == c] == c).mean()) for c in sorted(counts.index)},
    }


def shortcut_verdict(shortcut: dict) -> str:
    if "skipped" in shortcut:
        return f"Shortcut check skipped: {shortcut['skipped']}."
    acc, base = shortcut["metadata_accuracy"], shortcut["majority_baseline"]
    best_feature, best_acc = max(shortcut["single_feature_accuracy"].items(), key=lambda kv: kv[1])
    gap = acc - base
    if gap >= SHORTCUT_WARNING_GAP:
        giveaway = max(shortcut["per_class_recall"].items(), key=lambda kv: kv[1])
        return (
            f"**Warning: metadata alone predicts the class with {acc:.1%} accuracy** (majority baseline "
            f"{base:.1%}, +{gap:.1%}). A model could score that much without looking at the picture. "
            f"Strongest single shortcut: `{best_feature}` ({best_acc:.1%}); the most recognisable class "
            f"from metadata is `{giveaway[0]}` ({giveaway[1]:.0%} recall). Resize or re-encode images so "
            "classes share sizes and formats, and test on data from other sources."
        )
    return (
        f"No strong metadata shortcut: metadata-only accuracy {acc:.1%} vs majority baseline {base:.1%} "
        f"(+{gap:.1%}); best single feature `{best_feature}` {best_acc:.1%}."
    )


# --- charts -----------------------------------------------------------------------------------


def _plain_log_axis(axis) -> None:
    """Log scale labelled 50, 100, 200, 500 rather than 5x10^1: sizes must read at a glance."""
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
    axis.set_major_formatter(ScalarFormatter())
    axis.set_minor_formatter(NullFormatter())


def _class_colors(labels) -> dict[str, tuple]:
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10")
    return {label: cmap(i % 10) for i, label in enumerate(sorted(labels))}


def plot_class_balance(df: pd.DataFrame, output: Path) -> None:
    import matplotlib.pyplot as plt

    valid = df[df["valid"]]
    by_split = valid.groupby(["label", df["split"].replace("", "all")]).size().unstack(fill_value=0)
    by_split = by_split.reindex(sorted(df["label"].unique()), fill_value=0)
    invalid = (~df["valid"]).groupby(df["label"]).sum().reindex(by_split.index, fill_value=0)
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(by_split) + 1.8))
    left = np.zeros(len(by_split))
    split_colors = {"all": "tab:blue", "train": "tab:blue", "val": "tab:orange", "test": "tab:green"}
    for split_name in [s for s in ("all", "train", "val", "test") if s in by_split.columns]:
        ax.barh(
            by_split.index,
            by_split[split_name],
            left=left,
            color=split_colors[split_name],
            label=f"valid ({split_name})" if split_name != "all" else "valid",
        )
        left += by_split[split_name].to_numpy()
    if invalid.any():
        ax.barh(invalid.index, invalid, left=left, color="tab:red", label="invalid")
    for y, (total, bad) in enumerate(zip(left, invalid)):
        ax.text(total + bad, y, f"  {int(total):,}" + (f" (+{int(bad)} invalid)" if bad else ""), va="center")
    ax.set_xlim(0, (left + invalid.to_numpy()).max() * 1.3)
    ax.invert_yaxis()
    ax.set_xlabel("images")
    ax.set_title(f"Class balance ({len(df):,} files, {len(by_split)} classes)")
    if len(ax.get_legend_handles_labels()[0]) > 1:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=4, fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(output, dpi=110)
    plt.close(fig)


def plot_sizes(valid: pd.DataFrame, output: Path) -> None:
    import matplotlib.pyplot as plt

    labels = sorted(valid["label"].unique())
    colors = _class_colors(labels)
    short_side = valid[["width", "height"]].min(axis=1)
    fig, (ax_side, ax_kb, ax_wh) = plt.subplots(1, 3, figsize=(15, 4.6))
    for ax, values, title, unit in (
        (ax_side, short_side, "Short side per class", "pixels (log scale)"),
        (ax_kb, valid["bytes"] / 1024, "File size per class", "KB (log scale)"),
    ):
        boxes = ax.boxplot([values[valid["label"] == c] for c in labels], patch_artist=True, widths=0.6)
        ax.set_xticks(range(1, len(labels) + 1), labels, rotation=30 if len(labels) > 6 else 0)
        for patch, label in zip(boxes["boxes"], labels):
            patch.set_facecolor(colors[label])
            patch.set_alpha(0.6)
        ax.set_yscale("log")
        _plain_log_axis(ax.yaxis)
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    for label in labels:
        rows = valid[valid["label"] == label]
        ax_wh.scatter(rows["width"], rows["height"], s=8, alpha=0.35, color=colors[label], label=label)
    ax_wh.set_xscale("log")
    ax_wh.set_yscale("log")
    _plain_log_axis(ax_wh.xaxis)
    _plain_log_axis(ax_wh.yaxis)
    ax_wh.set_xlabel("width (px)")
    ax_wh.set_ylabel("height (px)")
    ax_wh.set_title("Width x height")
    ax_wh.legend(markerscale=2, fontsize=9)
    fig.suptitle("Image size distribution per class: a model can exploit sizes that differ by class")
    fig.tight_layout()
    fig.savefig(output, dpi=100)
    plt.close(fig)


def plot_shortcut(shortcut: dict, output: Path) -> None:
    import matplotlib.pyplot as plt

    single = shortcut["single_feature_accuracy"]
    names = ["all metadata"] + [f"{f} only" for f in single] + ["majority baseline"]
    values = [shortcut["metadata_accuracy"], *single.values(), shortcut["majority_baseline"]]
    colors = ["tab:red"] + ["tab:orange"] * len(single) + ["0.6"]
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(names) + 1.6))
    ax.barh(names, values, color=colors)
    ax.axvline(shortcut["majority_baseline"], color="0.3", linestyle="--", linewidth=1)
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:.1%}", va="center")
    ax.set_xlim(0, 1.12)
    ax.invert_yaxis()
    ax.set_xlabel(f"{shortcut['folds']}-fold cross-validated accuracy")
    ax.set_title("Shortcut check: can metadata alone predict the class?")
    fig.tight_layout()
    fig.savefig(output, dpi=110)
    plt.close(fig)


# --- report -----------------------------------------------------------------------------------


def _md_list(lines: list[str], total: int, more_hint: str) -> list[str]:
    out = [f"- {line}" for line in lines[:MARKDOWN_LIST_LIMIT]]
    if total > MARKDOWN_LIST_LIMIT:
        out.append(f"- ... and {total - MARKDOWN_LIST_LIMIT:,} more ({more_hint})")
    return out or ["None."]


def _class_table(df: pd.DataFrame) -> list[str]:
    lines = [
        "| class | files | valid | invalid | share | median size | median KB |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for label, rows in df.groupby("label", sort=True):
        ok = rows[rows["valid"]]
        size = f"{int(ok['width'].median())}x{int(ok['height'].median())}" if len(ok) else "-"
        kb = f"{ok['bytes'].median() / 1024:.1f}" if len(ok) else "-"
        lines.append(
            f"| {label} | {len(rows):,} | {len(ok):,} | {len(rows) - len(ok):,} | "
            f"{len(ok) / max(1, df['valid'].sum()):.1%} | {size} | {kb} |"
        )
    return lines


def _pair_lines(pairs: pd.DataFrame) -> list[str]:
    return [
        f"`{r.path_a}` ({r.label_a}) and `{r.path_b}` ({r.label_b}), distance {r.distance}"
        for r in pairs.head(MARKDOWN_LIST_LIMIT).itertuples()
    ]


def _shortcut_table(shortcut: dict) -> list[str]:
    if "skipped" in shortcut:
        return []
    lines = [
        "| model | accuracy |",
        "|---|---:|",
        f"| all metadata ({', '.join(shortcut['features'])}) | {shortcut['metadata_accuracy']:.1%} |",
    ]
    lines += [f"| {f} only | {a:.1%} |" for f, a in shortcut["single_feature_accuracy"].items()]
    lines.append(f"| majority baseline (always `{shortcut['majority_class']}`) | {shortcut['majority_baseline']:.1%} |")
    lines += [
        "",
        "Per-class recall of the metadata-only model: "
        + ", ".join(f"{c} {r:.0%}" for c, r in shortcut["per_class_recall"].items()),
    ]
    lines += [
        "",
        f"Classifier: {shortcut['classifier']}; {shortcut['folds']}-fold stratified cross-validation "
        "with duplicate groups kept within one fold.",
    ]
    return lines


def group_check(valid: pd.DataFrame) -> dict:
    """How the groups (sources) relate to the classes. When every group holds one class, a model
    can learn each source's look (its resolution, framing, subjects) instead of the class, and
    only validation by group can tell."""
    grouped = valid[valid["group"] != ""] if "group" in valid else valid.iloc[0:0]
    if grouped.empty:
        return {"groups": 0, "single_class_groups": 0, "warning": ""}
    classes_per_group = grouped.groupby("group")["label"].nunique()
    single = int((classes_per_group == 1).sum())
    check = {"groups": int(len(classes_per_group)), "single_class_groups": single,
             "groups_per_class": {str(k): int(v) for k, v in grouped.groupby("label")["group"].nunique().items()},
             "warning": ""}
    if single == len(classes_per_group):
        check["warning"] = (
            f"every one of the {single} groups holds a single class, so a model can learn each source's look "
            "instead of the class and a random split will not notice: validate by group "
            "(artstyle data split --by-group, artstyle crossval)"
        )
    elif single:
        check["warning"] = (
            f"{single} of {len(classes_per_group)} groups hold a single class: a model can learn their look "
            "instead of the class; validate by group (artstyle data split --by-group, artstyle crossval)"
        )
    return check


def write_markdown(summary: dict, df: pd.DataFrame, pairs: pd.DataFrame, tiny: pd.DataFrame, output: Path) -> None:
    invalid = df[~df["valid"]]
    sections = [
        f"# Dataset audit: {summary['source']}",
        "",
        f"{summary['files']:,} files, {summary['valid']:,} valid, {summary['invalid']:,} invalid, "
        f"{len(summary['classes'])} classes. Near-duplicate threshold: phash distance <= {summary['phash_threshold']}.",
        "",
        "## Groups (sources)",
        "",
        (f"{summary['group_check']['groups']} groups. **Warning:** {summary['group_check']['warning']}."
         if summary["group_check"]["warning"] else f"{summary['group_check']['groups']} groups.")
        if summary["group_check"]["groups"] else "No groups (files lie directly in their class folders).",
        "",
        "## Shortcut check",
        "",
        shortcut_verdict(summary["shortcut"]),
        "",
        *_shortcut_table(summary["shortcut"]),
        "",
        "![shortcut check](shortcut.png)" if "skipped" not in summary["shortcut"] else "",
        "",
        "## Classes",
        "",
        *_class_table(df),
        "",
        "![class balance](class_balance.png)",
        "",
        "## Image sizes",
        "",
        "![size distribution per class](image_sizes.png)",
        "",
        f"### Tiny images (short side under {summary['tiny_side']} px): {len(tiny):,}",
        "",
        *_md_list([f"`{r.path}` ({r.label}, {r.width}x{r.height})" for r in tiny.itertuples()], len(tiny), "tiny.csv"),
        "",
        f"## Invalid files: {len(invalid):,}",
        "",
        *_md_list([f"`{r.path}`: {r.error}" for r in invalid.itertuples()], len(invalid), "manifest error column"),
    ]
    for title, kind, scope in (
        ("Exact duplicates within a class", "exact", "within class"),
        ("Near duplicates within a class", "near", "within class"),
        ("Exact duplicates across classes (label errors)", "exact", "across classes"),
        ("Near duplicates across classes (likely label errors)", "near", "across classes"),
    ):
        rows = pairs[(pairs["kind"] == kind) & (pairs["scope"] == scope)]
        sections += [
            "",
            f"## {title}: {len(rows):,} pairs",
            "",
            *_md_list(_pair_lines(rows), len(rows), "duplicates.csv"),
        ]
    output.write_text("\n".join(sections) + "\n", encoding="utf-8")


def audit(
    data_dir_or_manifest: ManifestLike,
    output_dir: Union[str, os.PathLike],
    *,
    phash_threshold: int = DEFAULT_PHASH_THRESHOLD,
    tiny_side: int = TINY_SIDE,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Audit a data folder (scanned first) or a manifest; write ``audit.md``, ``audit.json``,
    ``class_balance.png``, ``image_sizes.png``, ``shortcut.png``, ``duplicates.csv`` and
    ``tiny.csv`` (plus ``manifest.csv`` when given a folder) to ``output_dir``.

    Returns the summary dict; ``summary['shortcut']`` holds ``metadata_accuracy`` (cross-validated
    accuracy of a classifier that sees only width, height, aspect, bytes, format and mode),
    ``majority_baseline``, ``single_feature_accuracy`` and ``per_class_recall``.
    """
    import matplotlib

    matplotlib.use("Agg")
    started = time.perf_counter()
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise ArtstyleError(f"{out}: exists and is not a folder")
    df = manifest_or_scan(data_dir_or_manifest, workers=workers, progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    if not isinstance(data_dir_or_manifest, pd.DataFrame) and Path(data_dir_or_manifest).is_dir():
        write_manifest(df, out / "manifest.csv")

    valid = df[df["valid"]].reset_index(drop=True)
    if valid.empty:
        raise ArtstyleError(f"{data_dir_or_manifest}: no valid images to audit")
    pairs = duplicate_pairs(valid, phash_threshold)
    tiny = valid[valid[["width", "height"]].min(axis=1) < tiny_side]
    shortcut = shortcut_check(valid, groups=duplicate_groups(valid, phash_threshold), seed=seed)

    summary = {
        "source": str(data_dir_or_manifest) if not isinstance(data_dir_or_manifest, pd.DataFrame) else "DataFrame",
        "files": int(len(df)),
        "valid": int(len(valid)),
        "invalid": int((~df["valid"]).sum()),
        "classes": {str(k): int(v) for k, v in valid["label"].value_counts().sort_index().items()},
        "invalid_files": [{"path": r.path, "error": r.error} for r in df[~df["valid"]].itertuples()],
        "phash_threshold": phash_threshold,
        "duplicate_pairs": {
            f"{kind} {scope}": int(((pairs["kind"] == kind) & (pairs["scope"] == scope)).sum())
            for kind in ("exact", "near")
            for scope in ("within class", "across classes")
        },
        "tiny_side": tiny_side,
        "tiny_images": int(len(tiny)),
        "shortcut": shortcut,
        "group_check": group_check(valid),
    }
    pairs.to_csv(out / "duplicates.csv", index=False)
    tiny[["path", "label", "width", "height"]].to_csv(out / "tiny.csv", index=False)
    plot_class_balance(df, out / "class_balance.png")
    plot_sizes(valid, out / "image_sizes.png")
    if "skipped" not in shortcut:
        plot_shortcut(shortcut, out / "shortcut.png")
    write_markdown(summary, df, pairs, tiny, out / "audit.md")
    summary["seconds"] = round(time.perf_counter() - started, 2)
    (out / "audit.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return summary
