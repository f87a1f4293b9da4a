"""LP-FT of the top of the backbone on a CPU: does fine-tuning the last stages help on sources
never seen?

    python bench/bench_partial_finetune.py [--crossval runs/default/crossval] [--freeze-stages 5]
        [--epochs 2] [--lr 1e-4] [--output runs/partial/crossval]

A full fine-tune under grouped 5-fold cross-validation is about 5 CPU-hours on 2 cores. The
engine's ``--freeze-stages K`` makes the question cheap, and this bench is a thin layer over it:
``artstyle crossval --mode finetune --freeze-stages K --head-init probe`` with the probe run's own
settings (data, folds, backbone, head, size, views, source balancing, feature cache), so that
the stem and stages 0..K-1 of the frozen Lite0 run once per image and view (their output cached
in float16 beside the probe's features), and in each fold the rest is fine-tuned from the probe's
head (LP): AdamW at a low LR, batch norms frozen, sources balanced, no label smoothing (the
probe's head was fitted without it). By default (``--val 0``) each fold trains on all of its
training sources for the fixed ``--epochs``, as each probe fold's head does, starting from the
C the probe folds used; ``--val F`` holds out F of them, by source, for early stopping instead,
so that the fine-tune sees fewer sources than the probe it is compared with.
The LP row is the probe crossval's own result. A killed bench continues where it stopped (the
crossval's --resume). Writes bench/results/crossval_partial_finetune.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
from _provenance import write_results
from crossval_run import headline

from artstyle.config import TrainConfig
from artstyle.engine.crossval import crossval, probe_c, started_folds

RESULTS = Path(__file__).resolve().parent / "results" / "crossval_partial_finetune.json"


def lp_ft_config(probe_cv: Path, args: argparse.Namespace) -> tuple[TrainConfig, dict]:
    """The probe crossval's settings with the LP-FT ones, and its plan (folds, near-duplicate threshold)."""
    saved = json.loads((probe_cv / "config.json").read_text())
    plan = json.loads((probe_cv / "folds" / "plan.json").read_text())
    cfg = TrainConfig.from_dict({k: v for k, v in saved.items() if k != "folds"})
    if cfg.mode != "probe":
        raise SystemExit(f"{probe_cv}: not a probe-mode crossval (mode {cfg.mode})")
    cfg = TrainConfig.from_dict({**cfg.to_dict(), "mode": "finetune", "freeze_stages": args.freeze_stages,
                                 "head_init": "probe", "epochs": args.epochs, "lr": args.lr, "freeze_epochs": 0,
                                 "val": args.val, "probe_c": probe_c(cfg),
                                 "label_smoothing": 0.0, "output": str(args.output),
                                 "feature_cache": cfg.feature_cache or str(probe_cv / "features")})
    return cfg, plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crossval", type=Path, default=Path("runs/default/crossval"),
                        help="a probe-mode crossval output dir")
    parser.add_argument("--freeze-stages", type=int, default=5, help="stem and stages 0..K-1 frozen")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--val", type=float, default=0.0,
                        help="training sources held out per fold for early stopping (0: none, fixed epochs)")
    parser.add_argument("--output", type=Path, default=Path("runs/partial/crossval"),
                        help="the LP-FT crossval's folder (continued if it holds a started one)")
    args = parser.parse_args()

    cfg, plan = lp_ft_config(args.crossval, args)
    resume = args.output.is_dir() and bool(started_folds(args.output))
    tick = time.time()
    if resume:
        metrics = crossval(resume=True, output=str(args.output))
    else:
        metrics = crossval(cfg, folds=plan["folds"], phash_threshold=plan["phash_threshold"])
    same_folds = [pd.read_csv(d / "folds.csv", keep_default_na=False)[["path", "fold"]] for d in (args.crossval,
                                                                                                  args.output)]
    if not same_folds[0].equals(same_folds[1]):
        raise SystemExit(f"{args.output}: its folds are not those of {args.crossval}; compare nothing")

    probe = json.loads((args.crossval / "metrics.json").read_text())
    results = {"LP (the shipped probe)": headline(probe, with_groups=True),
               f"LP-FT, stages {args.freeze_stages}+ and head, {args.epochs} epochs, lr {args.lr}":
                   headline(metrics, with_groups=True)}
    for name, r in results.items():
        print(name, {k: v for k, v in r.items() if k != "groups"})
    command = (f"python bench/bench_partial_finetune.py --crossval {args.crossval} --freeze-stages "
               f"{args.freeze_stages} --epochs {args.epochs} --lr {args.lr} --val {args.val} --output {args.output}")
    write_results(RESULTS, {"command": command, "folds": plan["folds"], "seconds": round(metrics["seconds"]),
                            "this_sitting_seconds": round(time.time() - tick), "results": results})
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
