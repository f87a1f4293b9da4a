"""Choose the default model's recipe by leave-sources-out accuracy: grouped 5-fold cross-validation
on artstyle-v2 (each fold holds out whole source folders of every class), with the same fold
assignment, head fitting and metrics as ``artstyle crossval``.

Frozen-backbone recipes are compared on features computed once per image and view
(``--features``: an .npy of shape (N, views, D) from ``style_statistics``, rows in manifest order),
so that every recipe costs seconds, not a CPU-hour of fine-tuning per fold.

    python bench/bench_recipes.py --manifest runs/v2/manifest.csv --features runs/exp/feats_efficientnet_lite0_224.npy

Writes bench/results/recipes.json and prints the table (docs/model.md quotes it through bench/report.py).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from _provenance import write_results

from artstyle.config import DEFAULT_PHASH_THRESHOLD
from artstyle.engine.crossval import assign_folds, grouped_metrics, out_of_fold_logits

# Lite0's levels (stem + 7 stages) and pooled width: the layout of style_statistics.
LEVEL_CHANNELS = (32, 16, 24, 40, 80, 112, 192, 320)
POOLED = 1280


def columns(levels=range(8), pooled=True, stats=("mean", "std")) -> np.ndarray:
    """Column indices of the chosen levels' statistics (and the pooled embedding)."""
    cols, start = [], 0
    for level, c in enumerate(LEVEL_CHANNELS):
        if level in levels:
            if "mean" in stats:
                cols += range(start, start + c)
            if "std" in stats:
                cols += range(start + c, start + 2 * c)
        start += 2 * c
    if pooled:
        cols += range(start, start + POOLED)
    return np.asarray(cols)


def evaluate_recipe(x, frame, fold, classes, *, c, balance) -> dict:
    logits = out_of_fold_logits(x, frame, fold, classes, c, balance)[0]
    return grouped_metrics(frame, logits, fold, classes)


RECIPES = {
    # name: (views, columns, C, balance, transform)
    "pooled, centre crop": ((0,), dict(levels=()), 0.1, "none", None),
    "style, centre crop": ((0,), {}, 0.1, "none", None),
    "style, centre crop, groups balanced": ((0,), {}, 0.1, "groups", None),
    "style, whole image": ((1,), {}, 0.1, "groups", None),
    "style, both views averaged": ((0, 1), {}, 0.1, "groups", None),
    "style, deep levels only (4-7)": ((0,), dict(levels=range(4, 8)), 0.1, "groups", None),
    "style, no pooled embedding": ((0,), dict(pooled=False), 0.1, "groups", None),
    "style, signed sqrt": ((0,), {}, 0.1, "groups", "ssqrt"),
    "style, C=0.03": ((0,), {}, 0.03, "groups", None),
    "style, C=0.3": ((0,), {}, 0.3, "groups", None),
}


def transform(x: np.ndarray, kind: str | None) -> np.ndarray:
    """Power normalisation (signed square root) tames heavy-tailed statistics before the scaler."""
    return np.sign(x) * np.sqrt(np.abs(x)) if kind == "ssqrt" else x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True, help="artstyle data scan of artstyle-v2")
    parser.add_argument("--features", required=True, help=".npy (N, views, D) in --order's row order")
    parser.add_argument("--order", required=True, help="CSV whose 'path' column gives the rows of --features")
    parser.add_argument("--only", nargs="*", help="recipe names to run (default: all)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("-o", "--output", default="bench/results/recipes.json")
    args = parser.parse_args()

    from artstyle.data import read_manifest

    manifest = read_manifest(args.manifest)
    order = pd.read_csv(args.order)["path"].tolist()
    feats = np.load(args.features, mmap_mode="r")
    frame = manifest.set_index("path").loc[order].reset_index()
    classes = sorted(frame["label"].unique())
    fold = assign_folds(frame, args.folds, seed=42, phash_threshold=DEFAULT_PHASH_THRESHOLD)
    results = {}
    for name, (views, cols, c, balance, kind) in RECIPES.items():
        if args.only and name not in args.only:
            continue
        tick = time.perf_counter()
        x = transform(np.asarray(feats[:, list(views)][:, :, columns(**cols)], dtype=np.float32).mean(1), kind)
        m = evaluate_recipe(x, frame, fold, classes, c=c, balance=balance)
        results[name] = {k: m[k] for k in ("mean_accuracy", "group_mean_accuracy", "worst_group_accuracy",
                                           "worst_group", "ece_uncalibrated", "ece", "temperature")}
        results[name]["groups"] = {g: round(r["accuracy"], 3) for g, r in m["groups"].items()}
        results[name]["seconds"] = time.perf_counter() - tick
        r = results[name]
        print(f"{name:<40} pooled {r['mean_accuracy']:.4f}  groups {r['group_mean_accuracy']:.4f}  "
              f"worst {r['worst_group_accuracy']:.3f} ({r['worst_group']})  ECE {r['ece_uncalibrated']:.3f}"
              f"->{r['ece']:.3f}  [{r['seconds']:.0f}s]", flush=True)
    write_results(args.output, {"folds": args.folds, "n": len(frame), "recipes": results})


if __name__ == "__main__":
    main()
