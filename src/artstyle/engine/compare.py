"""``compare``: several backbones on the same split with the same budget -> one table and one
chart (accuracy, macro-F1, parameters, GFLOPs, CPU images/s, training time, initialisation).
The seed notebook's "which backbone is best" answer, made reproducible."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from ..config import TrainConfig
from ..errors import ArtstyleError
from . import checkpoint as ckpt
from .data import resolve_splits
from .trainer import train

log = logging.getLogger("artstyle")


def count_gflops(model: torch.nn.Module, image_size: int) -> float:
    """Forward FLOPs of one image (FlopCounterMode counts a multiply-add as 2 FLOPs)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, image_size, image_size))
    return counter.get_total_flops() / 1e9


@torch.inference_mode()
def cpu_images_per_s(model: torch.nn.Module, image_size: int, batch: int = 32, seconds: float = 3.0) -> float:
    """Eager PyTorch forward throughput on this machine's CPU, model only."""
    x = torch.randn(batch, 3, image_size, image_size)
    model(x)  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        model(x)
        done += batch
    return done / (time.perf_counter() - start)


def describe_model(run_dir: Path) -> dict:
    model, spec, _ = ckpt.load_model(run_dir)
    return {
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "gflops": count_gflops(model, spec.image_size),
        "cpu_images_per_s": cpu_images_per_s(model, spec.image_size),
        "init": spec.init,
    }


def compare_one(backbone: str, split_dir: Path, out: Path, base: TrainConfig, weights: dict) -> dict:
    row = {"backbone": backbone}
    tick = time.perf_counter()
    try:
        result = train(base, data=str(split_dir), output=str(out / backbone), backbone=backbone,
                       weights=weights.get(backbone, ""))
    except ArtstyleError as exc:
        log.warning(f"{backbone}: skipped - {exc}")
        return row | {"error": str(exc)}
    history = pd.read_csv(result.run_dir / "history.csv")
    row |= {
        "test_accuracy": result.test.get("accuracy"),
        "test_macro_f1": result.test.get("macro_f1"),
        "val_accuracy": result.best.get("val_acc"),
        "epochs": len(history),
        "train_minutes": history["seconds"].sum() / 60,
        "wall_minutes": (time.perf_counter() - tick) / 60,
    }
    return row | describe_model(result.run_dir) | {"error": ""}


def plot_comparison(table: pd.DataFrame, path: Path) -> None:
    from .plots import plt, save_figure

    ok = table[table["error"] == ""]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    panels = (("test_accuracy", "test accuracy"), ("test_macro_f1", "test macro-F1"),
              ("cpu_images_per_s", "CPU images/s (eager, batch 32)"))
    for ax, (col, title) in zip(axes, panels):
        bars = ax.bar(ok["backbone"], ok[col], color=[f"C{i}" for i in range(len(ok))])
        ax.bar_label(bars, fmt="%.4f" if "accuracy" in col or "f1" in col else "%.0f", fontsize=8)
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=20)
        if col != "cpu_images_per_s" and len(ok):
            ax.set_ylim(max(0.0, ok[col].min() - 0.05), 1.0)
    fig.suptitle("Backbone comparison (same split, same budget)")
    save_figure(fig, path)


def write_markdown(table: pd.DataFrame, path: Path, base: TrainConfig) -> None:
    cols = ["backbone", "init", "test_accuracy", "test_macro_f1", "params_m", "gflops", "cpu_images_per_s",
            "epochs", "train_minutes", "error"]
    shown = table.reindex(columns=cols).astype(object).fillna("")
    lines = [f"# Backbone comparison: {base.mode}, {base.image_size} px, up to {base.epochs} epochs", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in shown.iterrows():
        lines.append("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in r) + " |")
    lines += ["", "![comparison](compare.png)", ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def compare(data, models: list[str], output, *, weights: dict | None = None, **overrides) -> pd.DataFrame:
    """Train each backbone on one shared split with one shared config; returns the table."""
    out = Path(output)
    base = TrainConfig.from_dict(overrides | {"data": str(data)})
    split_dir = out / "data"
    if not (split_dir / "train.csv").is_file():
        resolve_splits(data, split_dir, val=base.val, test=base.test, seed=base.seed)
    rows = [compare_one(name, split_dir, out, base, weights or {}) for name in models]
    table = pd.DataFrame(rows)
    if (table["error"] != "").all():
        raise ArtstyleError("no backbone could be trained: " + "; ".join(table["error"]))
    table.to_csv(out / "compare.csv", index=False)
    plot_comparison(table, out / "compare.png")
    write_markdown(table, out / "compare.md", base)
    return table
