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
from pathlib import Path

import numpy as np
from _provenance import write_results
from crossval_run import grouped_cv, load_crossval

RESULTS = Path(__file__).resolve().parent / "results" / "crossval_backbone_pair.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--first", default="runs/default/crossval")
    parser.add_argument("--second", default="runs/lite2/crossval")
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
    write_results(RESULTS, {"command": f"python bench/bench_backbone_pair.py --first {args.first} "
                                       f"--second {args.second}", "results": results})
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
