"""An ensemble of two recipes, scored as crossval scores one: out of fold, whole sources held out.

    python bench/bench_ensemble.py NAME CROSSVAL_A CROSSVAL_B [--weights 0.3 0.5 0.7]

Reads two finished `artstyle crossval` runs on the same data and folds (the probe and a fine-tune,
say), turns each run's out-of-fold probabilities into calibrated logits (log-probabilities over its
own fitted temperature, so that neither run's sharpness decides), averages them with weight w on
A and 1 - w on B, and scores the blend with crossval's own figures (pooled, mean over sources,
worst source, ECE after a temperature fitted on the blend). Writes bench/results/ensemble_NAME.json
with w = 0 and w = 1 (each run alone) beside the blends. The cost of an ensemble is both models'
time per image; recipes that share a frozen front (LP-FT from stage K and the probe) share its cost.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from _provenance import write_results
from crossval_run import headline

from artstyle.engine.calibration import logits_from_probs
from artstyle.engine.crossval import grouped_metrics

RESULTS = Path(__file__).resolve().parent / "results"


def calibrated_logits(crossval: Path) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """A crossval run's predictions (path, label, group, fold) and its logits over its temperature."""
    predictions = pd.read_csv(crossval / "predictions.csv", keep_default_na=False)
    temperature = json.loads((crossval / "metrics.json").read_text())["temperature"]
    classes = [c[2:] for c in predictions.columns if c.startswith("p_")]
    logits = logits_from_probs(predictions[[f"p_{c}" for c in classes]].to_numpy()) / temperature
    return predictions, logits, classes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="the result is bench/results/ensemble_NAME.json")
    parser.add_argument("a", type=Path, help="a finished crossval output dir")
    parser.add_argument("b", type=Path, help="another, on the same data and folds")
    parser.add_argument("--weights", type=float, nargs="+", default=[0.3, 0.5, 0.7], help="weights of A to try")
    args = parser.parse_args()
    if any(not 0 <= w <= 1 for w in args.weights):
        parser.error("--weights: each between 0 and 1")
    for crossval in (args.a, args.b):
        if not (crossval / "metrics.json").is_file():
            parser.error(f"{crossval}: not a finished crossval (no metrics.json)")
    (frame, a, classes), (other, b, other_classes) = calibrated_logits(args.a), calibrated_logits(args.b)
    keys = ["path", "label", "group", "fold"]
    if classes != other_classes or not frame[keys].equals(other[keys]):
        parser.error(f"{args.a} and {args.b} are not on the same images, classes and folds")
    fold = frame["fold"].to_numpy()
    rows = {}
    for w in sorted({0.0, 1.0, *args.weights}):
        metrics = grouped_metrics(frame, w * a + (1 - w) * b, fold, classes)
        r = rows[f"{w:g}"] = headline(metrics) | {"ece": metrics["ece"]}
        print(f"w(A) {w:4.2f}  pooled {r['mean_accuracy']:.4f}  mean over sources {r['group_mean_accuracy']:.4f}  "
              f"worst {r['worst_group']} {r['worst_group_accuracy']:.3f}  under 0.70: {len(r['groups_under_0.70'])}")
    info = {"a": str(args.a), "b": str(args.b), "n": int(len(frame)), "folds": int(fold.max() + 1),
            "recipes": {k: json.loads((d / "config.json").read_text()) for k, d in (("a", args.a), ("b", args.b))},
            "by_weight_of_a": rows}
    print(f"wrote {write_results(RESULTS / f'ensemble_{args.name}.json', info)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
