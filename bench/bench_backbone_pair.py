"""Two frozen backbones side by side: does Lite2's style features add to Lite0's on sources never seen?

    python bench/bench_backbone_pair.py [--first runs/default/crossval] [--second runs/lite2/crossval]

Each argument is the output of a probe-mode `artstyle crossval` on the same manifest, folds and
recipe but another backbone (or image size); their feature caches are reused, not recomputed.
Scores each backbone alone and their features concatenated with the grouped 5-fold
cross-validation of `artstyle crossval` (same folds, head, C, source balancing and augmented
views). Writes bench/results/crossval_backbone_pair.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from artstyle.config import TrainConfig
from artstyle.engine.crossval import grouped_metrics, out_of_fold_logits
from artstyle.engine.probe import cached_features, with_views
from artstyle.engine.transforms import create_view_augmentation
from artstyle.models import create_model

RESULTS = Path(__file__).resolve().parent / "results" / "crossval_backbone_pair.json"


def crossval_features(cv: Path) -> tuple[TrainConfig, pd.DataFrame, np.ndarray]:
    """The crossval's config, folds and its cached features (one row per image and view)."""
    cfg = TrainConfig.from_dict({k: v for k, v in json.loads((cv / "config.json").read_text()).items() if k != "folds"})
    frame = pd.read_csv(cv / "folds.csv", keep_default_na=False)
    classes = sorted(frame["label"].unique())
    model, spec = create_model(cfg.backbone, classes, pretrained=True, image_size=cfg.image_size, head=cfg.head)
    views = with_views(frame.drop(columns="fold"), cfg.probe_views)
    features = cached_features(Path(cfg.feature_cache), model, spec, {"all": views}, torch.device("cpu"), 2,
                               augment=create_view_augmentation(cfg))["all"]
    return cfg, frame, features


def grouped_cv(x: np.ndarray, frame: pd.DataFrame, cfg: TrainConfig, c: float) -> dict:
    """Out-of-fold accuracy exactly as ``crossval --mode probe`` computes it."""
    classes = sorted(frame["label"].unique())
    views = with_views(frame.drop(columns="fold"), cfg.probe_views)
    fold = frame["fold"].to_numpy()
    logits = out_of_fold_logits(x, views, fold, classes, c, cfg.balance)[0]
    m = grouped_metrics(frame, logits, fold, classes)
    return {**{k: m[k] for k in ("mean_accuracy", "group_mean_accuracy", "worst_group", "worst_group_accuracy")},
            "groups_under_0.70": sorted(g for g, r in m["groups"].items() if r["accuracy"] < 0.70)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--first", default="runs/default/crossval")
    parser.add_argument("--second", default="runs/lite2/crossval")
    args = parser.parse_args()

    cfg, frame, first = crossval_features(Path(args.first))
    cfg2, frame2, second = crossval_features(Path(args.second))
    if not frame[["path", "fold"]].equals(frame2[["path", "fold"]]) or cfg.probe_views != cfg2.probe_views:
        raise SystemExit("the two crossvals must share their images, folds and views")
    names = {"first": f"{cfg.backbone} {cfg.image_size}px", "second": f"{cfg2.backbone} {cfg2.image_size}px"}
    both = np.concatenate([first, second], 1)
    results = {}
    for name, x, c in ((names["first"], first, cfg.probe_c), (names["second"], second, cfg.probe_c),
                       ("both, concatenated", both, cfg.probe_c), ("both, concatenated, C / 2", both, cfg.probe_c / 2)):
        results[name] = grouped_cv(x, frame, cfg, c)
        print(name, results[name], flush=True)
    RESULTS.write_text(json.dumps({"command": f"python bench/bench_backbone_pair.py --first {args.first} "
                                              f"--second {args.second}", "results": results}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
