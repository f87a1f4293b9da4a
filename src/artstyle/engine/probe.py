"""Probe mode: a frozen backbone whose pooled features are computed once (and cached in the
run directory), then a logistic-regression head fitted by scikit-learn in seconds, its
regularisation chosen on the validation split. The result is an ordinary checkpoint: the
backbone plus a linear head holding the fitted coefficients."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..config import TrainConfig
from ..errors import ArtstyleError
from . import checkpoint as ckpt
from .data import ImageDataset, build_loader, default_workers
from .loop import extract_features
from .plots import save_history_and_curves
from .transforms import create_eval_transform

log = logging.getLogger("artstyle")
C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)


def cached_features(cfg, run_dir: Path, model, spec, frames, device) -> dict[str, torch.Tensor]:
    """Features for train and val, computed once per run."""
    cache = run_dir / "features.safetensors"
    if cache.is_file():
        return load_file(str(cache))
    tensors = {}
    for name in ("train", "val"):
        dataset = ImageDataset(frames[name], spec.classes, create_eval_transform(spec), spec.image_size)
        loader = build_loader(dataset, batch_size=64, train=False, workers=default_workers(cfg.workers, device.type), seed=0)
        tensors[f"{name}_x"], tensors[f"{name}_y"] = extract_features(model, loader, device, desc=f"features {name}")
    ckpt.atomic_write(cache, lambda tmp: save_file(tensors, tmp))
    return tensors


def fit_logistic_head(features: dict[str, torch.Tensor], classes: list[str]):
    """Choose C on validation accuracy (then log-loss); returns (model, history rows)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    x_train, y_train = features["train_x"].numpy(), features["train_y"].numpy()
    x_val, y_val = features["val_x"].numpy(), features["val_y"].numpy()
    labels = np.arange(len(classes))
    history, best, best_key = [], None, None
    for epoch, c in enumerate(C_GRID):
        tick = time.perf_counter()
        clf = LogisticRegression(C=c, max_iter=2000).fit(x_train, y_train)
        row = {
            "epoch": epoch, "C": c,
            "train_loss": log_loss(y_train, clf.predict_proba(x_train), labels=labels),
            "train_acc": clf.score(x_train, y_train),
            "val_loss": log_loss(y_val, clf.predict_proba(x_val), labels=labels),
            "val_acc": clf.score(x_val, y_val),
            "seconds": time.perf_counter() - tick,
        }
        history.append(row)
        key = (row["val_acc"], -row["val_loss"])
        if best_key is None or key > best_key:
            best, best_key = (clf, row), key
    return best, history


def run_probe(cfg: TrainConfig, run_dir: Path, model, spec, frames, device) -> dict:
    if spec.hidden:
        raise ArtstyleError("--mode probe fits a linear head; drop --hidden")
    tick = time.perf_counter()
    features = cached_features(cfg, run_dir, model, spec, frames, device)
    log.info(f"features: {len(features['train_x'])} train, {len(features['val_x'])} val "
             f"in {time.perf_counter() - tick:.0f}s")
    (clf, best_row), history = fit_logistic_head(features, spec.classes)
    head = model.get_classifier()
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(clf.coef_).float())
        head.bias.copy_(torch.from_numpy(clf.intercept_).float())
    for row in history:
        log.info(f"C={row['C']:<5} train acc {row['train_acc']:.4f}  val loss {row['val_loss']:.4f} "
                 f"acc {row['val_acc']:.4f}{'  *best*' if row is best_row else ''}")
    meta = {"epoch": best_row["epoch"], "metrics": best_row, "config": cfg.to_dict()}
    ckpt.save_model(run_dir / "weights" / "best", model, spec, **meta)
    ckpt.save_model(run_dir / "weights" / "last", model, spec, **meta)
    save_history_and_curves(run_dir, history, spec)
    return best_row
