"""What the benches that re-score an `artstyle crossval` run share: the run read back (its
config, folds, model, augmented views and cached features) and its headline figures.

Imported by bench/bench_correlations.py, bench_backbone_pair.py and bench_partial_finetune.py
(run as scripts, so this folder is on their path); the last only for ``headline``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from artstyle.config import TrainConfig
from artstyle.engine.crossval import grouped_metrics, out_of_fold_logits
from artstyle.engine.probe import cached_features, with_views
from artstyle.engine.transforms import create_view_augmentation
from artstyle.models import create_model
from artstyle.preprocess import PREPROCESS_VERSION


@dataclass
class CrossvalRun:
    cfg: TrainConfig
    frame: pd.DataFrame  # folds.csv: one row per image, with its fold
    classes: list[str]
    model: torch.nn.Module
    spec: object
    views: pd.DataFrame  # every image, then each augmented view (``with_views`` order)
    augment: object
    features: np.ndarray  # crossval's cached features, one row per view

    @property
    def fold(self) -> np.ndarray:
        return self.frame["fold"].to_numpy()


def load_crossval(cv: Path) -> CrossvalRun:
    """A probe-mode crossval output dir, with its features from its cache (not recomputed)."""
    cfg = TrainConfig.from_dict({k: v for k, v in json.loads((cv / "config.json").read_text()).items() if k != "folds"})
    frame = pd.read_csv(cv / "folds.csv", keep_default_na=False)
    classes = sorted(frame["label"].unique())
    model, spec = create_model(cfg.backbone, classes, pretrained=True, image_size=cfg.image_size, head=cfg.head)
    # Only ever read here: in train mode, any forward (even a shape probe) would move the batch
    # norms' running statistics, and a copy of those layers would then no longer be the model.
    model.eval()
    views = with_views(frame.drop(columns="fold"), cfg.probe_views)
    augment = create_view_augmentation(cfg)
    features = cached_features(Path(cfg.feature_cache), model, spec, {"all": views}, torch.device("cpu"), 2,
                               augment=augment)["all"]
    return CrossvalRun(cfg, frame, classes, model, spec, views, augment, features)


def cached_array(folder: str | Path, name: str, compute, mmap_mode: str | None = None) -> np.ndarray:
    """``compute()``'s array, kept in ``folder/name.vN.npy``. N is the preprocessing version that
    made the pixels, so an array computed from other pixels is never reused."""
    path = Path(folder) / f"{name}.v{PREPROCESS_VERSION}.npy"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, compute())
    return np.load(path, mmap_mode=mmap_mode)


def headline(metrics: dict, with_groups: bool = False) -> dict:
    """``grouped_metrics``'s headline figures and the groups under 0.70 (and every group's accuracy)."""
    out = {k: metrics[k] for k in ("mean_accuracy", "group_mean_accuracy", "worst_group", "worst_group_accuracy")}
    out["groups_under_0.70"] = sorted(g for g, r in metrics["groups"].items() if r["accuracy"] < 0.70)
    if with_groups:
        out["groups"] = {g: round(r["accuracy"], 3) for g, r in metrics["groups"].items()}
    return out


def grouped_cv(run: CrossvalRun, x: np.ndarray, c: float) -> dict:
    """Out-of-fold accuracy of features ``x`` (rows as ``run.views``), exactly as
    ``crossval --mode probe`` computes it: its folds, head, source balancing and views."""
    logits = out_of_fold_logits(x, run.views, run.fold, run.classes, c, run.cfg.balance)[0]
    return headline(grouped_metrics(run.frame, logits, run.fold, run.classes))
