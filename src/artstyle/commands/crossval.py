"""``artstyle crossval DATA --folds K [--mode probe|finetune] -o DIR [--resume]``: grouped K-fold
cross-validation (whole sources held out); every training flag applies to each fold."""

from __future__ import annotations

import argparse

from .train import add_config_flags, config_overrides

SKIP = {"test"}  # every image is tested once, out of fold


def register(sub) -> None:
    p = sub.add_parser(
        "crossval",
        help="grouped K-fold cross-validation: accuracy on sources the model never saw",
        description="Hold out whole groups (the source folder of CLASS/SOURCE/file.jpg, or scan --group-by) "
        "in each of K stratified folds, predict every image with the fold model that did not see its source, "
        "and report pooled, per-group, mean-over-groups and worst-group accuracy with a temperature fitted on "
        "the held-out predictions. Writes metrics.json, predictions.csv, groups.png, reliability.png, report.md. "
        "Each fold is committed as it finishes (DIR/folds/), so --resume continues a killed crossval.",
    )
    p.add_argument("data", nargs="?", default=None,
                   help="data dir (CLASS/SOURCE/file.jpg) or manifest CSV with a group column")
    p.add_argument("--folds", type=int, default=None, help="number of folds (default 5)")
    p.add_argument("--resume", action="store_true",
                   help="continue the crossval in -o DIR at its first unfinished fold (settings not given are "
                        "the saved ones; given ones must match)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no line per finished fold (with its time and the ETA) on stderr")
    add_config_flags(p, skip=SKIP)
    p.set_defaults(func=run, output_default="runs/crossval")


def run(args: argparse.Namespace) -> int:
    from ..engine.crossval import crossval

    overrides = config_overrides(args, skip=SKIP)
    if not args.resume:  # a resume takes the saved mode
        overrides.setdefault("mode", "probe")  # the CPU-sized default; finetune trains K runs
    overrides.setdefault("output", args.output_default)
    metrics = crossval(folds=args.folds, resume=args.resume, progress=args.progress, **overrides)
    print(f"pooled accuracy {metrics['mean_accuracy']:.4f}  mean over groups {metrics['group_mean_accuracy']:.4f}  "
          f"worst group {metrics['worst_group_accuracy']:.4f} ({metrics['worst_group']})")
    print(f"ECE {metrics['ece_uncalibrated']:.4f} -> {metrics['ece']:.4f} at temperature {metrics['temperature']:.3f}")
    print(f"report: {overrides['output']}/report.md")
    return 0
