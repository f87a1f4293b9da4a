"""Classification metrics from probabilities (scikit-learn), plus expected calibration error."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support, top_k_accuracy_score


def calibration_bins(probs: np.ndarray, targets: np.ndarray, n_bins: int = 10) -> tuple[float, list[dict]]:
    """Expected calibration error over top-1 confidence (Guo et al. 2017) and its bins."""
    conf = probs.max(1)
    correct = probs.argmax(1) == targets
    edges = np.linspace(0, 1, n_bins + 1)
    bins, ece = [], 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        mask = (conf > lo) & (conf <= hi)
        count = int(mask.sum())
        acc = float(correct[mask].mean()) if count else 0.0
        mean_conf = float(conf[mask].mean()) if count else 0.0
        ece += count / max(len(conf), 1) * abs(acc - mean_conf)
        bins.append({"lo": float(lo), "hi": float(hi), "count": count, "accuracy": acc, "confidence": mean_conf})
    return float(ece), bins


def classification_metrics(probs: np.ndarray, targets: np.ndarray, classes: list[str]) -> dict:
    labels = list(range(len(classes)))
    preds = probs.argmax(1)
    precision, recall, f1, support = precision_recall_fscore_support(targets, preds, labels=labels, zero_division=0)
    ece, bins = calibration_bins(probs, targets)
    return {
        "n": int(len(targets)),
        "accuracy": float(accuracy_score(targets, preds)),
        "macro_f1": float(f1_score(targets, preds, labels=labels, average="macro", zero_division=0)),
        "top2_accuracy": float(top_k_accuracy_score(targets, probs, k=min(2, len(classes)), labels=labels))
        if len(classes) > 2 else 1.0,
        "ece": ece,
        "per_class": {
            c: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                "support": int(support[i])}
            for i, c in enumerate(classes)
        },
        "confusion_matrix": confusion_matrix(targets, preds, labels=labels).tolist(),
        "calibration_bins": bins,
    }


def group_accuracy(frame: pd.DataFrame, correct: np.ndarray, **columns) -> pd.DataFrame:
    """Accuracy per group (the frame's ``group`` column; '' reads "(none)"), worst first, with
    each group's size and classes, plus the first value of any extra per-row ``columns``."""
    table = pd.DataFrame({"group": frame["group"].where(frame["group"] != "", "(none)").to_numpy(),
                          "label": frame["label"].to_numpy(), "correct": correct, **columns})
    return table.groupby("group").agg(
        n=("correct", "size"), accuracy=("correct", "mean"),
        classes=("label", lambda s: ",".join(sorted(set(s)))), **{k: (k, "min") for k in columns},
    ).sort_values("accuracy")


def group_summary(groups: pd.DataFrame) -> dict:
    """The figures a per-group table is read for: the mean over groups and the worst one."""
    return {
        "group_mean_accuracy": float(groups["accuracy"].mean()),
        "worst_group_accuracy": float(groups["accuracy"].iloc[0]),
        "worst_group": str(groups.index[0]),
    }
