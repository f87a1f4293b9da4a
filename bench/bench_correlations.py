"""Second-order style statistics: do channel correlations help on sources never seen?

    python bench/bench_correlations.py [--crossval runs/default/crossval] [--cache runs/correlations]

Gram-matrix style descriptors (Gatys et al., 2016) in their scale-free form: the correlation
between every pair of channels (centred, normalised, upper triangle) of the stem and the first
three stages of the frozen Lite0, stopping there (the deep, low-resolution stages are covered by
the mean/std statistics), added to the shipped style features. Scored by the grouped 5-fold
cross-validation of `artstyle crossval`: its folds.csv, recipe and fp32 feature cache, with the
augmented views reproduced from their seeds. Writes bench/results/crossval_correlations.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _provenance import write_results
from crossval_run import cached_array, grouped_cv, load_crossval

from artstyle.engine.data import build_loader
from artstyle.engine.probe import ViewDataset

LEVELS = [0, 1, 2, 3]  # the stem and the first three stages of an EfficientNet
RESULTS = Path(__file__).resolve().parent / "results" / "crossval_correlations.json"


def channel_correlations(level: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C*(C-1)/2): the correlation of every pair of channels over positions."""
    x = level.float().flatten(2)
    x = x - x.mean(2, keepdim=True)
    cov = x @ x.transpose(1, 2) / x.shape[2]
    sd = cov.diagonal(dim1=1, dim2=2).clamp_min(1e-6).sqrt()
    corr = cov / (sd[:, :, None] * sd[:, None, :])
    upper = torch.triu_indices(corr.shape[1], corr.shape[1], 1)
    return corr[:, upper[0], upper[1]]


@torch.inference_mode()
def correlation_features(backbone, views: pd.DataFrame, spec, augment) -> np.ndarray:
    backbone = backbone.eval().to(memory_format=torch.channels_last)
    loader = build_loader(ViewDataset(views, spec, augment), batch_size=64, train=False, workers=2, seed=0)
    out, tick = [], time.time()
    for i, (x, _) in enumerate(loader):
        levels = backbone.forward_intermediates(x.to(memory_format=torch.channels_last), indices=LEVELS,
                                                intermediates_only=True, extra_blocks=True, stop_early=True)
        out.append(torch.cat([channel_correlations(level) for level in levels], 1).numpy())
        if i % 50 == 0:
            print(f"  {i * 64}/{len(views)} rows, {time.time() - tick:.0f}s", flush=True)
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crossval", default="runs/default/crossval", help="a probe-mode crossval output dir")
    parser.add_argument("--cache", default="runs/correlations", help="where the correlation features are kept")
    args = parser.parse_args()

    run = load_crossval(Path(args.crossval))
    corr = cached_array(args.cache, "correlations",
                        lambda: correlation_features(run.model.backbone, run.views, run.spec, run.augment))
    style = run.features
    both = np.concatenate([style, corr], 1)
    results = {}
    shipped_c = run.cfg.probe_c
    for name, x, c in (("style (shipped)", style, shipped_c), ("style + correlations", both, shipped_c),
                       ("style + correlations, C 0.05", both, 0.05)):
        results[name] = grouped_cv(run, x, c)
        print(name, results[name], flush=True)
    write_results(RESULTS, {"command": "python bench/bench_correlations.py", "levels": "stem + stages 1-3",
                            "correlation_features": int(corr.shape[1]), "results": results})
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
