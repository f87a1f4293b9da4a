"""`artstyle sort` against `artstyle predict` on the same folder, side by side in one run.

    python bench/bench_sort.py [--images 300] [--rounds 3] [--data ../shared/data/artstyle-v1] [--model M.onnx]

Three commands, each as a user runs it (a subprocess: start, model load, decode, inference and
the rest), on the same --images images (links to files spread evenly over the data set):
  - `artstyle predict DIR` (CSV to a pipe that is read and dropped)
  - `artstyle sort DIR -o DEST --dry-run` (classify and plan: the plan's CSV, nothing touched)
  - `artstyle sort DIR -o DEST --copy` (each file hashed, copied through a temporary name and
    fsynced, every operation logged and fsynced twice; a fresh DEST each round on the same disk)
They run in turn within each round, the order rotating from round to round, so all three share
the machine's load as it comes and goes. Reports each one's median seconds and images/s, and the
median over rounds of sort's time over predict's in the same round. Writes bench/results/sort.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "sort.json"

from _provenance import write_results  # noqa: E402  (bench/ is on the path of a script run from it)


def pick_images(data: Path, count: int) -> list[str]:
    from artstyle.infer.sources import images_in_folder

    every = images_in_folder(str(data))
    if len(every) < count:
        sys.exit(f"{data} has {len(every)} images, fewer than {count}")
    return [every[int(i * len(every) / count)] for i in range(count)]


def commands(folder: Path, dest: Path, model: str | None) -> dict[str, list[str]]:
    model_args = ["--model", model] if model else []
    return {
        "predict": ["predict", str(folder), "--format", "csv", *model_args],
        "sort_dry_run": ["sort", str(folder), "-o", str(dest), "--dry-run", "--no-progress", *model_args],
        "sort_copy": ["sort", str(folder), "-o", str(dest), "--copy", "--no-progress", *model_args],
    }


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "artstyle", *argv], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"artstyle {' '.join(argv)} failed: {done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "artstyle-v1"))
    parser.add_argument("--model", help="an exported .onnx (default: the shipped default model)")
    args = parser.parse_args()

    info = {"images": args.images, "rounds": args.rounds}
    seconds: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="artstyle-bench-sort-") as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        for path in pick_images(Path(args.data), args.images):
            os.symlink(os.path.abspath(path), folder / os.path.basename(path))
        for r in range(args.rounds):
            dest = Path(tmp) / f"sorted-{r}"
            paths = commands(folder, dest, args.model)
            names = list(paths)
            for name in names[r % len(names):] + names[: r % len(names)]:
                seconds.setdefault(name, []).append(timed(paths[name]))
                if name == "sort_copy":
                    copied = sum(1 for p in dest.rglob("*") if p.is_file() and not p.name.startswith("."))
                    assert copied == args.images, f"sort --copy left {copied} files, not {args.images}"
                    shutil.rmtree(dest)
    results = {name: {"seconds": [round(s, 3) for s in runs], "median_s": round(statistics.median(runs), 3),
                      "images_per_s": round(args.images / statistics.median(runs), 1)}
               for name, runs in seconds.items()}
    ratios = {name: round(statistics.median(s / p for s, p in zip(seconds[name], seconds["predict"])), 3)
              for name in ("sort_dry_run", "sort_copy")}
    info.update(results=results, over_predict_same_round=ratios)
    write_results(RESULTS, info)
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
