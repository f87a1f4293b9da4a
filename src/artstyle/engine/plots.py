"""The figures people look at: training curves, confusion matrix, reliability diagram,
prediction grids. matplotlib with the Agg backend (no display needed)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..images import open_image  # noqa: E402
from . import checkpoint as ckpt  # noqa: E402


def save_figure(fig, path: Path) -> None:
    fig.tight_layout()
    ckpt.atomic_write(Path(path), lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def save_history_and_curves(run_dir: Path, history: list[dict], spec) -> None:
    frame = pd.DataFrame(history)
    ckpt.atomic_write(run_dir / "history.csv", lambda tmp: frame.to_csv(tmp, index=False))
    plot_curves(frame, run_dir / "curves.png", title=f"{spec.backbone} ({spec.init})")


def plot_curves(history: pd.DataFrame, path: Path, title: str = "") -> None:
    """Accuracy and loss per epoch, train vs validation (the seed notebook's plot)."""
    x_name = "C" if "C" in history else "epoch"
    x = history[x_name]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric in zip(axes, ("acc", "loss")):
        ax.plot(x, history[f"train_{metric}"], "o-", label="train")
        if f"val_{metric}" in history:  # absent when a fine-tune ran without a val split (--val 0)
            ax.plot(x, history[f"val_{metric}"], "s-", label="validation")
        ax.set_xlabel("C (inverse regularisation)" if x_name == "C" else "epoch")
        ax.set_ylabel("accuracy" if metric == "acc" else "loss")
        ax.set_title(f"{'Accuracy' if metric == 'acc' else 'Loss'} per {x_name}")
        if x_name == "C":
            ax.set_xscale("log")
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    save_figure(fig, path)


def plot_confusion(matrix: np.ndarray, classes: list[str], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(1.3 * len(classes) + 2.5, 1.1 * len(classes) + 2))
    norm = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{matrix[i, j]}\n{norm[i, j]:.1%}", ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black", fontsize=9)
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix")
    save_figure(fig, path)


def plot_reliability(bins: list[dict], ece: float, path: Path) -> None:
    """Confidence vs accuracy per bin; a calibrated model sits on the diagonal."""
    fig, ax = plt.subplots(figsize=(5, 5))
    centers = [(b["lo"] + b["hi"]) / 2 for b in bins if b["count"]]
    accs = [b["accuracy"] for b in bins if b["count"]]
    confs = [b["confidence"] for b in bins if b["count"]]
    width = bins[0]["hi"] - bins[0]["lo"] if bins else 0.1
    ax.bar(centers, accs, width=width * 0.9, alpha=0.7, label="accuracy", edgecolor="k")
    ax.plot(confs, accs, "o", color="C3", label="mean confidence")
    ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top-1 probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability diagram (ECE {ece:.3f})")
    ax.legend(loc="upper left")
    save_figure(fig, path)


def plot_prediction_grid(rows: pd.DataFrame, path: Path, title: str, cols: int = 6) -> None:
    """Images with 'true / predicted (confidence)'; mistakes titled in red."""
    n = len(rows)
    if n == 0:
        return
    cols = min(cols, n)
    grid_rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(grid_rows, cols, figsize=(2.3 * cols, 2.6 * grid_rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, (_, row) in zip(axes.flat, rows.iterrows()):
        ax.set_xticks([])
        ax.set_yticks([])
        try:
            ax.imshow(open_image(row["path"], draft_size=160).resize((160, 160)))
        except Exception:  # noqa: BLE001 - a missing thumbnail must not lose the report
            ax.text(0.5, 0.5, "unreadable", ha="center")
        wrong = row["true"] != row["predicted"]
        label = f"true: {row['true']}\npred: {row['predicted']} ({row['confidence']:.0%})"
        ax.set_title(label, fontsize=8.5, color="red" if wrong else "black",
                     fontweight="bold" if wrong else "normal")
        for spine in ax.spines.values():
            spine.set_visible(wrong)
            spine.set_color("red")
            spine.set_linewidth(4)
    fig.suptitle("\n".join(textwrap.wrap(title, 90)))
    save_figure(fig, path)
