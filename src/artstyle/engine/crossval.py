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

Each finished fold is committed at once (``folds/fold_K_predictions.csv``, its out-of-fold
logits, then ``folds/fold_K.json``, its record with that file's hash: a fold exists only once
its record does), so that ``resume=True`` (``--resume``) continues a killed crossval at its first
unfinished fold. The results are always computed from the committed folds, so a resumed
crossval writes what an uninterrupted one does.

Layout of ``DIR``::

    config.json  folds.csv  predictions.csv  metrics.json  groups.png  reliability.png  report.md
    folds/plan.json (what a resume must match)  folds/fold_K.json  folds/fold_K_predictions.csv
    features/ (probe: cached features)   fold{k}/ (finetune: the run of each fold)
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import TrainConfig, check_option_names, resumed_config
from ..data.manifest import class_index
from ..errors import ArtstyleError
from . import checkpoint as ckpt
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

def probe_folds(cfg: TrainConfig, out: Path, frame: pd.DataFrame, fold: np.ndarray, classes: list[str]):
    """Features once for every image; returns ``k -> logits`` of fold k's images from a head
    fitted on the other folds' groups."""
    import torch

    from ..models import create_model
    from .probe import cached_features, head_fitter, with_views
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
    fit = head_fitter(cfg, probe_c(cfg), len(classes))
    return lambda k: fold_head_logits(features, views, fold, k, classes, fit, cfg.balance)[0]


def probe_c(cfg: TrainConfig) -> float:
    """No val split inside a fold to choose C on: ``probe_c``, else a fixed, documented 0.1."""
    return cfg.probe_c if cfg.probe_c > 0 else 0.1


def fold_head_logits(features: np.ndarray, views: pd.DataFrame, fold: np.ndarray, k: int, classes: list[str],
                     fit, balance: str, also_score: tuple = ()) -> list[np.ndarray]:
    """Fold k's head, ``fit(x, y, weights, groups)`` on ``features`` of the other folds' rows (every
    image, then any augmented views: ``with_views`` order, ``fold`` given per image); the logits of
    fold k's images from ``features``, then from each of ``also_score``."""
    from .probe import groups_of, sample_weights, views_of

    targets = views["label"].map(class_index(classes)).to_numpy()
    view_fold = np.tile(fold, len(views) // len(fold))
    train, held = view_fold != k, (views_of(views) == 0).to_numpy() & (view_fold == k)
    head = fit(features[train], targets[train], sample_weights(views[train], balance), groups_of(views[train]))
    return [logits_from_probs(head.predict_proba(x[held])) for x in (features, *also_score)]


def out_of_fold_logits(features: np.ndarray, views: pd.DataFrame, fold: np.ndarray, classes: list[str],
                       c: float, balance: str, *, also_score: tuple = (), fit=None) -> list[np.ndarray]:
    """Every fold's ``fold_head_logits`` (the logistic head at C ``c`` unless ``fit`` is given).
    ``also_score``: other feature arrays of the same rows (another backbone's, say) that the
    same heads score too. Returns the images' logits: from ``features``, then from each of those."""
    from .probe import fit_head

    fit = fit or (lambda x, y, weights, groups: fit_head(x, y, c, weights))
    logits = [np.zeros((len(fold), len(classes))) for _ in range(1 + len(also_score))]
    for k in range(fold.max() + 1):
        for out, part in zip(logits, fold_head_logits(features, views, fold, k, classes, fit, balance, also_score)):
            out[fold == k] = part
    return logits


def finetune_folds(cfg: TrainConfig, out: Path, frame: pd.DataFrame, fold: np.ndarray, classes: list[str]):
    """Returns ``k -> logits`` of fold k's images from a whole training run on the other folds,
    early-stopped on an inner split by group. A fold whose run was killed continues that run.
    The folds share one cache (``--feature-cache``, else ``DIR/features``): with
    ``--freeze-stages`` each image's frozen activations are computed by the first fold that
    trains on it, and read by the others."""
    from ..data.splitter import split as split_manifest
    from .trainer import train

    cache = cfg.feature_cache or str(out / "features")

    def fold_logits(k: int) -> np.ndarray:
        fold_dir = out / f"fold{k}"
        if (fold_dir / "run" / "config.json").is_file():
            result = train(resume=str(fold_dir / "run"), workers=cfg.workers, device=cfg.device)
        else:
            inner = split_manifest(frame[fold != k], val=cfg.val, test=0.0, seed=cfg.seed, by_group=True)
            split_dir = fold_dir / "split"
            split_dir.mkdir(parents=True, exist_ok=True)
            for name, part in (("train", inner["train"]), ("val", inner["val"]), ("test", frame[fold == k])):
                part.to_csv(split_dir / f"{name}.csv", index=False)
            result = train(TrainConfig.from_dict({**cfg.to_dict(), "data": str(split_dir),
                                                  "output": str(fold_dir / "run"), "feature_cache": cache}))
        preds = pd.read_csv(result.run_dir / "test" / "predictions.csv")
        return logits_from_probs(preds[[f"p_{c}" for c in classes]].to_numpy())

    return fold_logits


FOLD_RUNNERS = {"probe": probe_folds, "finetune": finetune_folds}


# ----------------------------------------------------------------------------- committed folds

def fold_paths(out: Path, k: int) -> tuple[Path, Path]:
    """(record, predictions) of fold k."""
    return out / "folds" / f"fold_{k}.json", out / "folds" / f"fold_{k}_predictions.csv"


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def commit_fold(out: Path, k: int, frame: pd.DataFrame, fold: np.ndarray, logits: np.ndarray,
                classes: list[str], seconds: float) -> dict:
    """Fold k's logits, then its record (naming their hash), each written whole and fsynced:
    until the record is there, the fold is not done."""
    record_path, predictions_path = fold_paths(out, k)
    held = fold == k
    rows = frame.loc[held, ["path", "label", "group"]].assign(
        fold=k, **{f"logit_{c}": logits[:, i] for i, c in enumerate(classes)})
    ckpt.atomic_write(predictions_path, lambda tmp: rows.to_csv(tmp, index=False))
    targets = frame.loc[held, "label"].map(class_index(classes)).to_numpy()
    record = {"fold": k, "n": int(held.sum()), "accuracy": float((logits.argmax(1) == targets).mean()),
              "seconds": seconds, "predictions": predictions_path.name,
              "predictions_sha256": file_sha256(predictions_path)}
    ckpt.write_json(record_path, record)
    return record


def committed_folds(out: Path, folds: int) -> dict[int, dict]:
    """The records of the folds that are done: a record whose predictions file is there, whole."""
    done = {}
    for k in range(folds):
        record_path, predictions_path = fold_paths(out, k)
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
            if record["predictions_sha256"] == file_sha256(predictions_path):
                done[k] = record
        except (OSError, ValueError, KeyError):
            continue
    return done


def started_folds(out: Path) -> list[str]:
    """What a crossval left in ``out`` that a resume would continue: fold records, fold runs."""
    return sorted(str(p.relative_to(out)) for p in [*out.glob("folds/fold_*.json"), *out.glob("fold*/run/config.json")])


def read_fold_logits(out: Path, k: int, frame: pd.DataFrame, fold: np.ndarray, classes: list[str]) -> np.ndarray:
    rows = pd.read_csv(fold_paths(out, k)[1], keep_default_na=False)
    if rows["path"].astype(str).tolist() != frame.loc[fold == k, "path"].astype(str).tolist():
        raise ArtstyleError(f"{fold_paths(out, k)[1]}: its images are not fold {k}'s; start again in a new -o")
    return rows[[f"logit_{c}" for c in classes]].to_numpy(dtype=np.float64)


# ----------------------------------------------------------------------------- resume

def content_hash(frame: pd.DataFrame, columns) -> str:
    """A hash of what the columns hold (not of how a file spells them)."""
    present = [c for c in columns if c in frame]
    return hashlib.sha256(frame[present].astype(str).to_csv(index=False).encode()).hexdigest()[:16]


def make_plan(cfg: TrainConfig, folds: int, phash_threshold: int, frame: pd.DataFrame, fold: np.ndarray) -> dict:
    """Everything the committed folds depend on: a resume must find all of it unchanged."""
    return {"config": cfg.to_dict(), "folds": folds, "phash_threshold": phash_threshold,
            "manifest_sha256": content_hash(frame, ("path", "label", "group", "sha256")),
            "fold_assignment_sha256": content_hash(frame.assign(fold=fold), ("path", "fold"))}


def read_plan(out: Path) -> dict:
    path = out / "folds" / "plan.json"
    if not path.is_file():
        raise ArtstyleError(f"cannot --resume {out}: no crossval was started there (no folds/plan.json)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ArtstyleError(f"{path}: not valid JSON ({exc})") from None


def resume_settings(out: Path, config: TrainConfig | None, folds: int | None, phash_threshold: int | None,
                    overrides: dict) -> tuple[TrainConfig, dict]:
    """The saved config and plan; any explicitly given setting that differs is refused, as is a
    folder with no finished fold."""
    plan = read_plan(out)
    if not started_folds(out):
        raise ArtstyleError(f"cannot --resume {out}: no fold has finished yet; run it again without --resume")
    saved = TrainConfig.from_dict(plan["config"], source=str(out / "folds" / "plan.json"))
    given = {**(config.to_dict() if config else {}), **overrides}
    cfg = resumed_config(saved, given, out, extra={"folds": (plan["folds"], folds),
                                                   "phash_threshold": (plan["phash_threshold"], phash_threshold)})
    cfg.output = str(out)
    return cfg, plan


def check_plan(out: Path, saved: dict, now: dict) -> None:
    """The data and the fold assignment a resume finds must be those the folds were made with."""
    for key, what in (("manifest_sha256", "the data (its manifest: paths, labels, groups, file hashes)"),
                      ("fold_assignment_sha256", "the fold assignment")):
        if saved[key] != now[key]:
            raise ArtstyleError(f"cannot --resume {out} with a different config: {what} changed since it started "
                                f"({saved[key]} -> {now[key]})")


def start_fresh(out: Path) -> None:
    """A new crossval never mixes with the folds of an earlier one (as ``train`` never
    overwrites a run)."""
    started = started_folds(out)
    if started:
        raise ArtstyleError(f"{out} already holds a started crossval ({', '.join(started[:3])}"
                            f"{' ...' if len(started) > 3 else ''}): pass --resume to continue it, or choose another -o")
    for leftover in out.glob("folds/fold_*_predictions.csv"):  # of folds never committed
        leftover.unlink()


def clear_temporary_files(out: Path) -> None:
    """atomic_write's half-written files of a killed crossval (never read)."""
    for leftover in [*out.glob(".*.tmp"), *out.glob("folds/.*.tmp")]:
        leftover.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- progress

def duration(seconds: float) -> str:
    """3m10s, 45s, 1h02m."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def report_fold(record: dict, done: dict[int, dict], folds: int, enabled: bool) -> None:
    """One line per finished fold on stderr, with an ETA from the mean time of the folds done."""
    if not enabled:
        return
    left = folds - len(done)
    mean = sum(r["seconds"] for r in done.values()) / len(done)
    eta = f", ETA {duration(mean * left)}" if left else ", all folds done"
    print(f"fold {len(done)}/{folds} done in {duration(record['seconds'])} (fold {record['fold']}: "
          f"{record['n']} held-out images, accuracy {record['accuracy']:.4f}){eta}", file=sys.stderr, flush=True)


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
        f"# Cross-validation by group: {cfg.backbone}, {cfg.head} head, {cfg.mode}"
        f"{' (MLP head)' if cfg.mode == 'probe' and cfg.probe_head == 'mlp' else ''}"
        f"{f', stem and stages 0-{cfg.freeze_stages - 1} frozen' if cfg.mode == 'finetune' and cfg.freeze_stages else ''}"
        f"{', from the probe head' if cfg.mode == 'finetune' and cfg.head_init == 'probe' else ''}, {cfg.image_size} px",
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


def crossval(config: TrainConfig | None = None, *, folds: int | None = None, phash_threshold: int | None = None,
             resume: bool = False, progress: bool = True, **overrides) -> dict:
    """Grouped K-fold cross-validation of a training recipe. ``crossval(data="data/",
    output="runs/cv", folds=5, mode="probe", head="style")``; returns the metrics dict.
    ``resume=True`` continues a killed one in ``output`` at its first unfinished fold (settings
    not given are the saved ones; given ones must match). ``progress``: a line per fold on stderr."""
    from ..config import DEFAULT_PHASH_THRESHOLD

    check_option_names(overrides)
    tick = time.perf_counter()
    if resume:
        out = Path(overrides.get("output") or (config.output if config else TrainConfig().output))
        cfg, plan = resume_settings(out, config, folds, phash_threshold, overrides)
        folds, phash_threshold = plan["folds"], plan["phash_threshold"]
        clear_temporary_files(out)
    else:
        cfg = TrainConfig.from_dict({**(config.to_dict() if config else {}), **overrides})
        folds = 5 if folds is None else folds
        phash_threshold = DEFAULT_PHASH_THRESHOLD if phash_threshold is None else phash_threshold
        if not cfg.data:
            raise ArtstyleError("no data given: pass a data dir or a manifest CSV with a group column")
        out = Path(cfg.output)
        start_fresh(out)
    fold_runner = FOLD_RUNNERS.get(cfg.mode)
    if fold_runner is None:
        raise ArtstyleError(f"unknown mode '{cfg.mode}' (choose probe or finetune)")
    from .trainer import check_finetune_options

    check_finetune_options(cfg)
    frame = load_grouped_manifest(cfg.data)
    classes = sorted(frame["label"].unique())
    fold = assign_folds(frame, folds, cfg.seed, phash_threshold)
    plan_now = make_plan(cfg, folds, phash_threshold, frame, fold)
    if resume:
        check_plan(out, plan, plan_now)
    else:
        ckpt.write_json(out / "folds" / "plan.json", plan_now)
        (out / "config.json").write_text(json.dumps({**cfg.to_dict(), "folds": folds}, indent=2), encoding="utf-8")
        frame.assign(fold=fold)[["path", "label", "group", "fold"]].to_csv(out / "folds.csv", index=False)

    done = committed_folds(out, folds)
    earlier = sum(r["seconds"] for r in done.values())
    todo = [k for k in range(folds) if k not in done]
    if done and todo and progress:
        print(f"resuming {out}: {len(done)} of {folds} folds done, continuing at fold {todo[0]}",
              file=sys.stderr, flush=True)
    if todo:
        fold_logits = fold_runner(cfg, out, frame, fold, classes)
        for k in todo:
            start = time.perf_counter()
            logits = fold_logits(k)
            done[k] = commit_fold(out, k, frame, fold, logits, classes, time.perf_counter() - start)
            report_fold(done[k], done, folds, progress)
    logits = np.zeros((len(frame), len(classes)))
    for k in range(folds):
        logits[fold == k] = read_fold_logits(out, k, frame, fold, classes)
    return write_results(out, cfg, frame, fold, classes, logits, earlier + time.perf_counter() - tick)


def write_results(out: Path, cfg: TrainConfig, frame: pd.DataFrame, fold: np.ndarray, classes: list[str],
                  logits: np.ndarray, seconds: float) -> dict:
    """metrics.json, predictions.csv, the plots and the report from every fold's logits."""
    from .plots import plot_reliability

    metrics = grouped_metrics(frame, logits, fold, classes)
    metrics |= {"data": str(cfg.data), "mode": cfg.mode, "backbone": cfg.backbone, "head": cfg.head,
                "probe_head": cfg.probe_head, "image_size": cfg.image_size, "balance": cfg.balance,
                "freeze_stages": cfg.freeze_stages, "head_init": cfg.head_init,
                "seconds": seconds}
    probs = calibrated_probs(logits, metrics["temperature"])
    predictions = frame[["path", "label", "group"]].assign(
        fold=fold, predicted=[classes[i] for i in probs.argmax(1)], confidence=probs.max(1),
        **{f"p_{c}": probs[:, i] for i, c in enumerate(classes)})
    ckpt.atomic_write(out / "predictions.csv", lambda tmp: predictions.to_csv(tmp, index=False))
    ckpt.write_json(out / "metrics.json", metrics)
    plot_groups(metrics, out / "groups.png")
    plot_reliability(metrics["calibration_bins"], metrics["ece"], out / "reliability.png")
    write_report(out, metrics, cfg)
    return metrics
