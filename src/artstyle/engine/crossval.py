"""``crossval``: grouped, stratified K-fold cross-validation, the honest estimate of how a
recipe does on sources it has never seen.

Each fold holds out whole groups (the manifest's ``group`` column: the source folder of
``CLASS/SOURCE/file.jpg``, merged with duplicate groups so that a copy of a held-out image
cannot hide in training), stratified by class with scikit-learn's ``StratifiedGroupKFold``.
Every image is predicted exactly once, by the fold model that did not see its source. From
these out-of-fold predictions come the pooled accuracy, the accuracy of every group, the mean
over groups and the worst group, and a temperature fitted on them (held-out groups only) with
the calibration error before and after.

``mode="probe"`` computes the features of every image once and fits a head per fold (minutes on
a CPU); ``mode="finetune"`` trains a whole run per fold, with early stopping on an inner split
by group of the fold's training sources (a GPU job).

Layout of ``DIR``::

    config.json  folds.csv  predictions.csv  metrics.json  groups.png  reliability.png  report.md
    features/ (probe: cached features)   fold{k}/ (finetune: the run of each fold)
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import TrainConfig
from ..data.manifest import class_index
from ..errors import ArtstyleError
from .calibration import calibrated_probs, fit_temperature, logits_from_probs
from .metrics import calibration_bins, group_accuracy, group_summary

log = logging.getLogger("artstyle")


def load_grouped_manifest(data) -> pd.DataFrame:
    """Valid rows of a data folder (scanned) or manifest CSV, with a ``group`` for every row."""
    from ..data.scanner import manifest_or_scan

    frame = manifest_or_scan(data, progress=False) if not isinstance(data, pd.DataFrame) else data
    frame = frame[frame["valid"]].sort_values("path", kind="stable").reset_index(drop=True)
    if frame.empty:
        raise ArtstyleError(f"{data}: no valid images")
    return frame


def check_groups_per_class(frame: pd.DataFrame, units: np.ndarray, folds: int) -> None:
    """Each fold must be able to hold out some group of every class."""
    per_class = pd.Series(units).groupby(frame["label"].to_numpy()).nunique()
    short = per_class[per_class < folds]
    if len(short):
        names = ", ".join(f"'{c}' has {n}" for c, n in short.items())
        raise ArtstyleError(
            f"cannot make {folds} grouped folds: every class needs at least {folds} groups, but {names}; "
            f"use --folds {max(2, int(per_class.min()))} or add sources"
        )


def assign_folds(frame: pd.DataFrame, folds: int, seed: int, phash_threshold: int) -> np.ndarray:
    """The fold (0..K-1) whose model predicts each row: whole groups per fold, classes stratified."""
    from sklearn.model_selection import StratifiedGroupKFold

    from ..data.splitter import split_groups

    if folds < 2:
        raise ArtstyleError(f"--folds {folds}: cross-validation needs at least 2 folds")
    units = split_groups(frame, phash_threshold, by_group=True)
    check_groups_per_class(frame, units, folds)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    fold = np.full(len(frame), -1)
    for k, (_, held_out) in enumerate(splitter.split(np.zeros(len(frame)), frame["label"], units)):
        fold[held_out] = k
    return fold


# ----------------------------------------------------------------------------- the two modes

def probe_fold_logits(cfg: TrainConfig, out: Path, frame: pd.DataFrame, fold: np.ndarray,
                      classes: list[str]) -> np.ndarray:
    """Features once for every image, then one head per fold on the other folds' groups."""
    import torch

    from ..models import create_model
    from .probe import cached_features, with_views
    from .transforms import create_view_augmentation

    model, spec = create_model(cfg.backbone, classes, pretrained=cfg.pretrained, weights=cfg.weights or None,
                               image_size=cfg.image_size, drop_rate=cfg.drop_rate, head=cfg.head)
    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if cfg.device == "auto" else cfg.device))
    cache = Path(cfg.feature_cache) if cfg.feature_cache else out / "features"
    # Every image once as evaluated, then its augmented views (training rows only use those).
    views = with_views(frame, cfg.probe_views)
    features = cached_features(cache, model.to(device), spec, {"all": views}, device, cfg.workers,
                               augment=create_view_augmentation(cfg))["all"]
    return out_of_fold_logits(features, views, fold, classes, probe_c(cfg), cfg.balance)[0]


def probe_c(cfg: TrainConfig) -> float:
    """No val split inside a fold to choose C on: ``probe_c``, else a fixed, documented 0.1."""
    return cfg.probe_c if cfg.probe_c > 0 else 0.1


def out_of_fold_logits(features: np.ndarray, views: pd.DataFrame, fold: np.ndarray, classes: list[str],
                       c: float, balance: str, *, also_score: tuple = ()) -> list[np.ndarray]:
    """One head per fold, fitted on ``features`` of the other folds' rows (every image, then any
    augmented views: ``with_views`` order, ``fold`` given per image), scoring the fold's images.
    ``also_score``: other feature arrays of the same rows (another backbone's, say) that the
    same heads score too. Returns the images' logits: from ``features``, then from each of those."""
    from .probe import fit_head, sample_weights, views_of

    targets = views["label"].map(class_index(classes)).to_numpy()
    view_fold = np.tile(fold, len(views) // len(fold))
    clean = (views_of(views) == 0).to_numpy()
    logits = [np.zeros((len(fold), len(classes))) for _ in range(1 + len(also_score))]
    for k in range(fold.max() + 1):
        train, held = view_fold != k, clean & (view_fold == k)
        head = fit_head(features[train], targets[train], c, sample_weights(views[train], balance))
        for out, x in zip(logits, (features, *also_score)):
            out[fold == k] = logits_from_probs(head.predict_proba(x[held]))
        log.info(f"fold {k}: {int(held.sum())} held-out images, accuracy "
                 f"{(logits[0][fold == k].argmax(1) == targets[held]).mean():.4f}")
    return logits


def finetune_fold_logits(cfg: TrainConfig, out: Path, frame: pd.DataFrame, fold: np.ndarray,
                         classes: list[str]) -> np.ndarray:
    """A whole training run per fold; early stopping watches an inner split by group."""
    from ..data.splitter import split as split_manifest
    from .trainer import train

    logits = np.zeros((len(frame), len(classes)))
    for k in range(fold.max() + 1):
        fold_dir = out / f"fold{k}"
        inner = split_manifest(frame[fold != k], val=cfg.val, test=0.0, seed=cfg.seed, by_group=True)
        split_dir = fold_dir / "split"
        split_dir.mkdir(parents=True, exist_ok=True)
        for name, part in (("train", inner["train"]), ("val", inner["val"]), ("test", frame[fold == k])):
            part.to_csv(split_dir / f"{name}.csv", index=False)
        result = train(TrainConfig.from_dict({**cfg.to_dict(), "data": str(split_dir), "output": str(fold_dir / "run")}))
        preds = pd.read_csv(result.run_dir / "test" / "predictions.csv")
        held = np.flatnonzero(fold == k)
        logits[held] = logits_from_probs(preds[[f"p_{c}" for c in classes]].to_numpy())
    return logits


# ----------------------------------------------------------------------------- metrics

def grouped_metrics(frame: pd.DataFrame, logits: np.ndarray, fold: np.ndarray, classes: list[str]) -> dict:
    """Pooled, per-group, per-fold and calibration figures from out-of-fold logits."""
    targets = frame["label"].map(class_index(classes)).to_numpy()
    temperature = fit_temperature(logits, targets)
    raw, calibrated = calibrated_probs(logits), calibrated_probs(logits, temperature)
    correct = raw.argmax(1) == targets
    groups = group_accuracy(frame, correct, fold=fold)
    ece_before, _ = calibration_bins(raw, targets)
    ece, bins = calibration_bins(calibrated, targets)
    per_class = {c: float(correct[targets == i].mean()) for i, c in enumerate(classes) if (targets == i).any()}
    return {
        "n": int(len(frame)),
        "folds": int(fold.max() + 1),
        "mean_accuracy": float(correct.mean()),
        **group_summary(groups),
        "groups_below_0.9": [str(g) for g in groups.index[groups["accuracy"] < 0.9]],
        "per_class_recall": per_class,
        "temperature": temperature,
        "ece": ece,
        "ece_uncalibrated": ece_before,
        "calibration_bins": bins,
        "groups": {str(g): {"n": int(r.n), "accuracy": float(r.accuracy), "classes": r.classes, "fold": int(r.fold)}
                   for g, r in groups.iterrows()},
        "fold_rows": [
            {"fold": k, "n": int((fold == k).sum()), "accuracy": float(correct[fold == k].mean()),
             "groups": sorted(set(groups.index[groups["fold"] == k]))}
            for k in range(int(fold.max()) + 1)
        ],
    }


def plot_groups(metrics: dict, path: Path) -> None:
    """One bar per held-out group, worst at the top, coloured by class."""
    from .plots import plt, save_figure

    names = list(metrics["groups"])
    rows = [metrics["groups"][g] for g in names]
    colours = {c: f"C{i}" for i, c in enumerate(sorted({r["classes"] for r in rows}))}
    fig, ax = plt.subplots(figsize=(7, 0.22 * len(names) + 1.5))
    ax.barh(range(len(names)), [r["accuracy"] for r in rows], color=[colours[r["classes"]] for r in rows])
    ax.set_yticks(range(len(names)), [f"{g} ({r['n']})" for g, r in zip(names, rows)], fontsize=7)
    ax.invert_yaxis()
    ax.axvline(metrics["mean_accuracy"], color="k", ls="--", lw=1, label=f"pooled {metrics['mean_accuracy']:.3f}")
    ax.set_xlim(0, 1)
    ax.set_xlabel("accuracy when the whole group is held out")
    ax.set_title(f"Leave-groups-out ({metrics['folds']} folds): mean over groups {metrics['group_mean_accuracy']:.3f}")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
    ax.legend(handles + ax.get_legend_handles_labels()[0], list(colours) + [ax.get_legend_handles_labels()[1][0]],
              loc="lower right", fontsize=7)
    save_figure(fig, path)


def write_report(out: Path, metrics: dict, cfg: TrainConfig) -> None:
    lines = [
        f"# Cross-validation by group: {cfg.backbone}, {cfg.head} head, {cfg.mode}, {cfg.image_size} px",
        "",
        f"{metrics['folds']} folds; each holds out whole groups (sources) of every class. {metrics['n']} images.",
        "",
        "| figure | value |", "|---|---|",
        f"| accuracy, pooled over images | {metrics['mean_accuracy']:.4f} |",
        f"| accuracy, mean over groups | {metrics['group_mean_accuracy']:.4f} |",
        f"| worst group | {metrics['worst_group_accuracy']:.4f} ({metrics['worst_group']}) |",
        f"| temperature (fitted on held-out groups) | {metrics['temperature']:.3f} |",
        f"| ECE before / after temperature scaling | {metrics['ece_uncalibrated']:.4f} / {metrics['ece']:.4f} |",
        "",
        "![groups](groups.png) ![reliability](reliability.png)",
        "",
        "| group | classes | images | accuracy | fold |", "|---|---|---|---|---|",
    ] + [f"| {g} | {r['classes']} | {r['n']} | {r['accuracy']:.3f} | {r['fold']} |" for g, r in metrics["groups"].items()]
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def crossval(config: TrainConfig | None = None, *, folds: int = 5, phash_threshold: int | None = None,
             **overrides) -> dict:
    """Grouped K-fold cross-validation of a training recipe. ``crossval(data="data/",
    output="runs/cv", folds=5, mode="probe", head="style")``; returns the metrics dict."""
    from ..config import DEFAULT_PHASH_THRESHOLD
    from .plots import plot_reliability

    cfg = TrainConfig.from_dict({**(config.to_dict() if config else {}), **overrides})
    if not cfg.data:
        raise ArtstyleError("no data given: pass a data dir or a manifest CSV with a group column")
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    tick = time.perf_counter()
    frame = load_grouped_manifest(cfg.data)
    classes = sorted(frame["label"].unique())
    fold = assign_folds(frame, folds, cfg.seed, DEFAULT_PHASH_THRESHOLD if phash_threshold is None else phash_threshold)
    (out / "config.json").write_text(json.dumps({**cfg.to_dict(), "folds": folds}, indent=2), encoding="utf-8")
    frame.assign(fold=fold)[["path", "label", "group", "fold"]].to_csv(out / "folds.csv", index=False)

    fold_logits = {"probe": probe_fold_logits, "finetune": finetune_fold_logits}.get(cfg.mode)
    if fold_logits is None:
        raise ArtstyleError(f"unknown mode '{cfg.mode}' (choose probe or finetune)")
    logits = fold_logits(cfg, out, frame, fold, classes)

    metrics = grouped_metrics(frame, logits, fold, classes)
    metrics |= {"data": str(cfg.data), "mode": cfg.mode, "backbone": cfg.backbone, "head": cfg.head,
                "image_size": cfg.image_size, "balance": cfg.balance, "seconds": time.perf_counter() - tick}
    probs = calibrated_probs(logits, metrics["temperature"])
    predictions = frame[["path", "label", "group"]].assign(
        fold=fold, predicted=[classes[i] for i in probs.argmax(1)], confidence=probs.max(1),
        **{f"p_{c}": probs[:, i] for i, c in enumerate(classes)})
    predictions.to_csv(out / "predictions.csv", index=False)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    plot_groups(metrics, out / "groups.png")
    plot_reliability(metrics["calibration_bins"], metrics["ece"], out / "reliability.png")
    write_report(out, metrics, cfg)
    return metrics
