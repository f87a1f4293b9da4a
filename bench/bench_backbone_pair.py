"""Two frozen backbones side by side: does Lite2's style features add to Lite0's on sources never seen?

    python bench/bench_backbone_pair.py [--first runs/default/crossval] [--second runs/lite2/crossval] [--name NAME]

Each argument is the output of a probe-mode `artstyle crossval` on the same manifest, folds and
recipe but another backbone (or image size); their feature caches are reused, not recomputed.
Scores each backbone alone and their features concatenated with the grouped 5-fold
cross-validation of `artstyle crossval` (same folds, head, C, source balancing and augmented
views). Beside the accuracy, the cost: each backbone's model time per image (its style features
in eager PyTorch, batch 32, on this machine's threads), as the pair would pay both. Writes
bench/results/crossval_NAME.json (NAME: backbone_pair).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from _provenance import write_results
from crossval_run import grouped_cv, load_crossval

RESULTS = Path(__file__).resolve().parent / "results"


@torch.inference_mode()
def model_ms_per_image(run, batch: int = 32, rounds: int = 3) -> float:
    """The best of ``rounds`` timed batches of the style features (after one warm-up batch)."""
    from artstyle.models.style import style_statistics

    images = torch.randn(batch, 3, run.cfg.image_size, run.cfg.image_size)
    backbone = run.model.backbone
    style_statistics(backbone, images)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        style_statistics(backbone, images)
        times.append(time.perf_counter() - start)
    return 1000 * min(times) / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--first", default="runs/default/crossval")
    parser.add_argument("--second", default="runs/lite2/crossval")
    parser.add_argument("--name", default="backbone_pair", help="results go to bench/results/crossval_NAME.json")
    args = parser.parse_args()

    first, second = load_crossval(Path(args.first)), load_crossval(Path(args.second))
    if (not first.frame[["path", "fold"]].equals(second.frame[["path", "fold"]])
            or first.cfg.probe_views != second.cfg.probe_views):
        raise SystemExit("the two crossvals must share their images, folds and views")
    names = [f"{run.cfg.backbone} {run.cfg.image_size}px" for run in (first, second)]
    both = np.concatenate([first.features, second.features], 1)
    c = first.cfg.probe_c
    results = {}
    for name, x, c_used in ((names[0], first.features, c), (names[1], second.features, c),
                            ("both, concatenated", both, c), ("both, concatenated, C / 2", both, c / 2)):
        results[name] = grouped_cv(first, x, c_used)
        print(name, results[name], flush=True)
    cost = {name: round(model_ms_per_image(run), 2) for name, run in zip(names, (first, second))}
    print("model ms per image", cost, flush=True)
    out = RESULTS / f"crossval_{args.name}.json"
    write_results(out, {"command": f"python bench/bench_backbone_pair.py --first {args.first} "
                                   f"--second {args.second} --name {args.name}",
                        "model_ms_per_image": cost, "results": results})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
