"""What each predictor stream costs in memory: peak RSS growth of running batches on 1, 2 and 4
streams at once, for the fp32 and the int8 default model.

    python bench/bench_streams_memory.py [--batch 32] [--streams 1 2 4]

Each setting runs in a fresh process (peak RSS only ever grows): load the model with
``threads = streams``, note the RSS, run ``streams`` batches side by side twice (the second
time on warm buffers), and report the peak RSS growth. Writes bench/results/streams_memory.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from _provenance import write_results

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "streams_memory.json"

ONE_SETTING = """
import resource, sys
from concurrent.futures import ThreadPoolExecutor
import numpy as np
import artstyle

streams, precision, batch = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
clf = artstyle.load(precision=precision, threads=streams, streams=streams)
pixels = np.random.default_rng(0).integers(0, 256, (batch, clf.image_size, clf.image_size, 3), dtype=np.uint8)
x = np.stack([clf.model_input(p) for p in pixels])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with ThreadPoolExecutor(streams) as pool:
    for _ in range(2):
        list(pool.map(clf.run, [x] * streams))
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


def peak_growth_mb(streams: int, precision: str, batch: int) -> float:
    done = subprocess.run([sys.executable, "-c", ONE_SETTING, str(streams), precision, str(batch)],
                          capture_output=True, text=True, check=True)
    return round(float(done.stdout.strip()), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    rows = {precision: {str(s): peak_growth_mb(s, precision, args.batch) for s in args.streams}
            for precision in ("fp32", "int8")}
    per_stream = {p: round((r[str(max(args.streams))] - r[str(min(args.streams))])
                           / (max(args.streams) - min(args.streams)), 1) for p, r in rows.items()}
    result = {"command": "python bench/bench_streams_memory.py " + " ".join(
                  [f"--batch {args.batch}", "--streams", *map(str, args.streams)]),
              "model": "the shipped default", "batch": args.batch, "peak_rss_growth_mb": rows,
              "mb_per_extra_stream": per_stream}
    write_results(RESULTS, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
