"""`artstyle predict --engine ray` against the local engine, on the same images in one run.

    python bench/bench_ray.py [--images 5000] [--rounds 3] [--data ../shared/data/artstyle-v2]

One local Ray instance (all usable CPUs) is started once and its start-up time recorded apart:
on a real cluster it is already running. The images are cut into --rounds chunks; on each
chunk every engine runs in turn (rotating the order), through the CLI entry point in this
process, so all figures share the machine's load even when other work comes and goes:
  - local: `artstyle predict DIR -o out.csv` (decode threads + ONNX Runtime, batch 32)
  - ray, 1 actor: `--engine ray --actors 1` (the actor reserves 1 CPU, decode tasks the rest)
  - ray, 2 actors: `--engine ray --actors 2 --cpus-per-actor 0.5` (on 2 cores; 1 ORT thread each)
Each Ray figure includes what every run pays on a warm cluster: planning, starting the actors,
loading the model in each, and streaming the rows back to the CSV. The rows of every Ray run
are checked against the local rows (same labels, probabilities within 1e-6).
Writes bench/results/ray.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from _provenance import write_results

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "artstyle-v2"
RESULTS = REPO / "bench" / "results" / "ray.json"
BATCH = 32
ENGINES = {
    "local": [],
    "ray_1_actor": ["--engine", "ray", "--actors", "1", "--cpus-per-actor", "1"],
    "ray_2_actors": ["--engine", "ray", "--actors", "2", "--cpus-per-actor", "0.5"],
}


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    import onnxruntime
    import ray

    return {"nproc": len(os.sched_getaffinity(0)), "cpu": cpu, "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__, "ray": ray.__version__,
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()]}


def pick_images(data: Path, count: int) -> list[str]:
    """``count`` images spread evenly over the sorted dataset, so every class and source is in."""
    from artstyle.infer.sources import images_in_folder

    every = [real_file(p) for p in images_in_folder(str(data))]
    if len(every) < count:
        sys.exit(f"{data} has {len(every)} images, fewer than {count}")
    return [every[int(i * len(every) / count)] for i in range(count)]


def real_file(path: str) -> str:
    """artstyle-v2 holds v1's images as relative symbolic links; a copy that lost the links
    leaves 65-byte text files naming the target instead. Follow those by hand, so that the
    bench measures images and not instant 'not an image' rows."""
    if os.path.getsize(path) < 512:
        with open(path, "rb") as f:
            target = os.path.join(os.path.dirname(path), f.read().decode("utf-8", "replace").strip())
        if os.path.isfile(target):
            return target
    return path


def link_chunk(files: list[str], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(files):
        os.symlink(os.path.realpath(f), folder / f"{i:05d}{Path(f).suffix}")
    return folder


def run_cli(folder: Path, out: Path, extra: list[str]) -> float:
    from artstyle.cli import main

    args = ["predict", str(folder), "-o", str(out), "--batch-size", str(BATCH), "--no-progress", *extra]
    stderr = io.StringIO()  # failures are counted from the CSV; keep the report readable
    tick = time.perf_counter()
    with contextlib.redirect_stderr(stderr):
        code = main(args)
    seconds = time.perf_counter() - tick
    if code not in (0, 2):
        sys.exit(f"artstyle {' '.join(args)} failed ({code}): {stderr.getvalue()[-2000:]}")
    return seconds


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def max_difference(rows: list[dict], reference: list[dict]) -> float:
    """Largest probability difference; raises when paths, labels or errors differ."""
    assert [r["path"] for r in rows] == [r["path"] for r in reference], "rows differ in paths or order"
    worst = 0.0
    for mine, theirs in zip(rows, reference):
        assert (mine["label"], mine["error"]) == (theirs["label"], theirs["error"]), mine["path"]
        for key in (k for k in mine if k.startswith("p_") and theirs[k] != ""):
            worst = max(worst, abs(float(mine[key]) - float(theirs[key])))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3, help="3: each engine runs once in each position")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "WARNING")

    info = machine()
    files = pick_images(args.data, args.images)
    for f in files:  # into the page cache first: else whichever engine runs first pays the disk
        Path(f).read_bytes()
    import ray

    tick = time.perf_counter()
    ray.init(num_cpus=info["nproc"], include_dashboard=False, logging_level="WARNING")
    ray_start_s = time.perf_counter() - tick

    seconds = {name: 0.0 for name in ENGINES}
    per_round_seconds: dict[str, list[float]] = {}
    worst = {name: 0.0 for name in ENGINES if name != "local"}
    per_round = (len(files) + args.rounds - 1) // args.rounds
    with tempfile.TemporaryDirectory(prefix="artstyle-bench-ray-") as tmp:
        tmp = Path(tmp)
        # Warm-up: worker processes start once per cluster; real clusters have them already.
        warm = link_chunk(files[:64], tmp / "warm")
        run_cli(warm, tmp / "warm.csv", ENGINES["ray_1_actor"])
        for r in range(args.rounds):
            chunk = link_chunk(files[r * per_round:(r + 1) * per_round], tmp / f"round{r}")
            names = list(ENGINES)
            names = names[r % len(names):] + names[:r % len(names)]  # rotate who goes first
            outputs = {}
            for name in names:
                outputs[name] = tmp / f"round{r}-{name}.csv"
                took = run_cli(chunk, outputs[name], ENGINES[name])
                seconds[name] += took
                per_round_seconds.setdefault(name, []).append(round(took, 2))
                print(f"round {r + 1}/{args.rounds} {name}: {took:.1f} s", file=sys.stderr)
            reference = read_rows(outputs["local"])
            for name in worst:
                worst[name] = max(worst[name], max_difference(read_rows(outputs[name]), reference))
        # What a run costs before its first batch (plan, start actors, load the model): each
        # engine on one batch of images, best of 3.
        tiny = link_chunk(files[:BATCH], tmp / "tiny")
        fixed = {name: min(run_cli(tiny, tmp / f"tiny-{name}.csv", extra) for _ in range(3))
                 for name, extra in ENGINES.items()}
    ray.shutdown()

    results = {}
    for name, total in seconds.items():
        results[name] = {"seconds": round(total, 2), "images_per_s": round(len(files) / total, 1),
                         "seconds_per_round": per_round_seconds[name],
                         "args": " ".join(ENGINES[name]) or "(default engine)"}
        # Throughput once running: the per-run fixed cost taken out of every round.
        steady = len(files) / max(1e-9, total - args.rounds * fixed[name])
        results[name]["fixed_cost_per_run_s"] = round(fixed[name], 2)
        results[name]["steady_images_per_s"] = round(steady, 1)
        if name != "local":
            results[name]["time_vs_local"] = round(total / seconds["local"], 3)
            results[name]["steady_rate_vs_local"] = None  # filled below
            results[name]["max_probability_difference_vs_local"] = worst[name]
    for name in worst:
        results[name]["steady_rate_vs_local"] = round(
            results[name]["steady_images_per_s"] / results["local"]["steady_images_per_s"], 3)
    report = {
        "command": "python bench/bench_ray.py " + " ".join(sys.argv[1:]),
        "machine": {**info, "load_average_at_end": [round(v, 2) for v in os.getloadavg()]},
        "images": len(files), "rounds": args.rounds, "batch": BATCH, "data": str(args.data),
        "ray_local_instance_start_s": round(ray_start_s, 2),
        "results": results,
        "notes": "Ray figures include planning, actor start and model load per run on a warm local "
                 "instance; instance start-up is reported apart (a real cluster is already up). The "
                 "machine is shared with other jobs: compare the ratios, measured side by side.",
    }
    write_results(RESULTS, report)
    print("| engine | seconds | images/s | time vs local | fixed cost per run (s) | images/s once running | vs local |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['seconds']} | {r['images_per_s']} | {r.get('time_vs_local', 1.0)} | "
              f"{r['fixed_cost_per_run_s']} | {r['steady_images_per_s']} | {r.get('steady_rate_vs_local', 1.0)} |")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
