"""One `artstyle crossval` run kept as a benchmark result: runs the command as given and writes its
metrics.json, with provenance, to bench/results/crossval_NAME.json (the docs' recipe table reads
these files).

    python bench/bench_crossval.py NAME -- DATA --folds 5 --mode probe [any crossval flag] -o DIR

The recipe variants the docs quote:

    python bench/bench_crossval.py style_150 -- runs/default/manifest.csv --folds 5 --mode probe --head style \
        --balance groups --probe-c 0.1 --image-size 150 -o runs/style_150/crossval
    python bench/bench_crossval.py views2 -- runs/default/manifest.csv --folds 5 --mode probe --head style \
        --balance groups --probe-c 0.1 --image-size 224 --probe-views 2 -o runs/views2/crossval
    python bench/bench_crossval.py lite2_260 -- runs/default/manifest.csv --folds 5 --mode probe \
        --backbone efficientnet_lite2 --image-size 260 --head style --balance groups --probe-c 0.1 \
        --probe-views 1 -o runs/lite2/crossval
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _provenance import write_results

from artstyle.cli import main as artstyle

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="the result is bench/results/crossval_NAME.json")
    parser.add_argument("crossval_args", nargs=argparse.REMAINDER, help="-- then `artstyle crossval`'s arguments")
    args = parser.parse_args()
    rest = args.crossval_args[1:] if args.crossval_args[:1] == ["--"] else args.crossval_args
    if "-o" not in rest and "--output" not in rest:
        parser.error("give crossval an output dir (-o DIR): its metrics.json is what is kept")
    status = artstyle(["crossval", *rest])
    if status:
        return status
    output = Path(rest[(rest.index("-o") if "-o" in rest else rest.index("--output")) + 1])
    metrics = json.loads((output / "metrics.json").read_text())
    print(f"wrote {write_results(RESULTS / f'crossval_{args.name}.json', metrics)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
