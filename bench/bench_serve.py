"""`artstyle serve` under load, against `artstyle predict` on the same images, in one run.

    python bench/bench_serve.py [--requests 2000] [--concurrency 16] [--model M.onnx] [--data ../shared/data/artstyle-v1]

- the CLI: `artstyle predict DIR` over the `--requests` images (a subprocess, as a user runs it),
  once before and once after the server runs, so both see the machine's load alike
- the server (a subprocess on 127.0.0.1) with micro-batching at --max-batch 8 and 4, and off (1),
  each with every --streams setting given (default: the server's own, one stream per thread):
  warm-up, then a load generator in a second process sends `--requests` single-image requests
  from `--concurrency` clients: wrk with bench/wrk_post.lua (raw bodies; `apt-get install wrk`),
  or bench/loadgen.py (httpx, multipart) with `--client httpx` or when wrk is missing; zero errors required; p50/p99 latency, requests/s, and the
  server's RSS after warm-up and after the load
Prints a Markdown table and writes bench/results/serve.json (`--results`: the docs quote
serve_int8.json and serve_fp32.json, one run per model). Needs artstyle[serve] (and torch
to export a model when none is given or shipped).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _provenance import write_results

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "artstyle-v1"
RESULTS = REPO / "bench" / "results" / "serve.json"
CACHE = Path(tempfile.gettempdir()) / "artstyle-bench"
LOADGEN = REPO / "bench" / "loadgen.py"
WRK_SCRIPT = REPO / "bench" / "wrk_post.lua"
WARMUP_REQUESTS = 200
RSS_GROWTH_LIMIT_MB = 50
TARGET_RATIO = 0.70


def bench_model(explicit: str | None) -> tuple[Path, str]:
    """The given or shipped model, else EfficientNet-Lite0 at 150 px exported once and cached
    (ImageNet backbone, random head: the shipped model's cost)."""
    from artstyle.infer.predictor import DEFAULT_MODEL

    if explicit:
        return Path(explicit), f"given: {explicit}"
    if DEFAULT_MODEL.is_file():
        return DEFAULT_MODEL, "shipped default model"
    onnx = CACHE / "lite0-150" / "model.onnx"
    if not onnx.is_file():
        from artstyle.engine.checkpoint import save_model
        from artstyle.engine.export import export_onnx
        from artstyle.models import create_model

        model, spec = create_model("efficientnet_lite0", ["anime", "cartoon", "human"], image_size=150)
        save_model(onnx.parent / "run" / "weights" / "best", model, spec, metrics={}, epoch=0)
        export_onnx(onnx.parent / "run", onnx)
    return onnx, "EfficientNet-Lite0 150 px, ImageNet backbone, untrained head (no shipped model yet)"


def pick_images(data: Path, count: int, folder: Path) -> Path:
    """``count`` images spread over the sorted dataset (every class), linked into ``folder``."""
    from artstyle.infer.sources import images_in_folder

    every = images_in_folder(str(data))
    if len(every) < count:
        sys.exit(f"{data} has {len(every)} images, fewer than {count}")
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        source = Path(every[int(i * len(every) / count)])
        link = folder / f"{i:05d}_{source.name}"
        if not link.exists():
            os.symlink(source, link)
    return folder


def image_summary(folder: Path) -> dict:
    from PIL import Image

    files = sorted(folder.iterdir())
    sizes = [Image.open(f).size for f in files[:: max(1, len(files) // 200)]]
    kb = [f.stat().st_size / 1024 for f in files]
    return {"count": len(files), "median_kb": round(sorted(kb)[len(kb) // 2], 1),
            "median_pixels": sorted(w * h for w, h in sizes)[len(sizes) // 2]}


def run_cli(model: Path, folder: Path, out: Path) -> dict:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "artstyle", "predict", str(folder), "-m", str(model), "-o", str(out),
                    "--no-progress"], check=True)
    wall = time.perf_counter() - start
    count = len(out.read_text().splitlines()) - 1
    return {"images": count, "wall_s": round(wall, 2), "images_per_s": round(count / wall, 2)}


class Server:
    """``artstyle serve`` on a free port of 127.0.0.1, stopped on exit."""

    def __init__(self, model: Path, log: Path, *args: str):
        self.command = [sys.executable, "-m", "artstyle", "serve", "--model", str(model), "--host", "127.0.0.1",
                        "--port", "0", *args]
        self.log_path = log

    def __enter__(self):
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(self.command, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            found = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", self.log_path.read_text())
            if found:
                self.url = found.group(1)
                httpx.get(self.url + "/healthz").raise_for_status()
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        self.__exit__()
        sys.exit(f"server did not start:\n{self.log_path.read_text()}")

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return round(int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024, 1)

    def __exit__(self, *exc):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()


def load_httpx(url: str, images: Path, requests: int, concurrency: int) -> dict:
    """bench/loadgen.py: Python and httpx, multipart uploads; it takes a good share of the
    2 cores it shares with the server."""
    done = subprocess.run([sys.executable, str(LOADGEN), "--url", url, "--images", str(images),
                           "--requests", str(requests), "--concurrency", str(concurrency)],
                          capture_output=True, text=True)
    if not done.stdout.strip():
        sys.exit(f"loadgen failed: {done.stderr}")
    return json.loads(done.stdout)


def load_wrk(url: str, images: Path, requests: int, concurrency: int, seconds: float = 10.0) -> dict:
    """wrk (C, Debian's package) with bench/wrk_post.lua: raw-body uploads from a light client.
    wrk runs for a duration, so this runs it long enough for at least ``requests`` requests at
    the rate a short first run measured."""
    listing = images.parent / f"{images.name}.txt"
    listing.write_text("\n".join(str(f) for f in sorted(images.iterdir())) + "\n")

    def run(duration: int) -> dict:
        done = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{duration}s", "-s", str(WRK_SCRIPT), url],
                              capture_output=True, text=True, env={**os.environ, "IMAGES": str(listing)})
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith("{")), None)
        if done.returncode or line is None:
            sys.exit(f"wrk failed: {done.stdout}{done.stderr}")
        return {**json.loads(line), "concurrency": concurrency, "body": "raw", "client": "wrk"}

    probe = run(max(2, int(seconds)))
    if probe["requests"] >= requests:
        return probe
    return run(int(requests / max(probe["requests_per_s"], 1.0) * 1.15) + 1)


LOADERS = {"wrk": load_wrk, "httpx": load_httpx}


def run_server(model: Path, images: Path, requests: int, concurrency: int, max_batch: int, workdir: Path,
               client: str = "wrk", streams: int | None = None) -> dict:
    load = LOADERS[client]
    extra = ["--streams", str(streams)] if streams else []
    with Server(model, workdir / f"server-batch{max_batch}-streams{streams}.log", "--max-batch", str(max_batch),
                *extra) as server:
        warmup = load(server.url, images, WARMUP_REQUESTS, concurrency)
        rss_after_warmup = server.rss_mb()
        result = load(server.url, images, requests, concurrency)
        rss_after_load = server.rss_mb()
        batching = httpx.get(server.url + "/healthz").json()["batching"]
    result.update(max_batch=max_batch, streams=batching.get("streams", 1), mean_batch=batching["recent_mean_batch"], warmup_errors=warmup["errors"], rss_mb_after_warmup=rss_after_warmup,
                  rss_mb_after_load=rss_after_load, rss_growth_mb=round(rss_after_load - rss_after_warmup, 1))
    return result


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"nproc": len(os.sched_getaffinity(0)), "cpu": cpu, "python": platform.python_version(),
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()]}


def report(results: dict) -> str:
    cli = results["cli_images_per_s"]
    rows = [f"| CLI `artstyle predict DIR` (mean of 2 runs) | {cli:.1f} img/s | | | |"]
    for run in results["server"]:
        rows.append(
            f"| server, max-batch {run['max_batch']} (mean {run['mean_batch']:.1f}), {run.get('streams', 1)} "
            f"stream(s), {run['concurrency']} clients "
            f"| {run['requests_per_s']:.1f} req/s "
            f"({run['requests_per_s'] / cli:.0%} of CLI) | {run['latency_ms']['p50']:.0f} / {run['latency_ms']['p99']:.0f} ms "
            f"| {run['errors']} | {run['rss_mb_after_warmup']:.0f} -> {run['rss_mb_after_load']:.0f} MB |")
    head = ["| | throughput | p50 / p99 latency | errors | server RSS (after warm-up -> after load) |",
            "|---|---|---|---|---|"]
    return "\n".join(head + rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--model", help="exported .onnx (default: the shipped model, else a cached Lite0 150 px)")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="image folder to draw the images from")
    parser.add_argument("--results", default=str(RESULTS), help="where to write the JSON (default bench/results/serve.json)")
    parser.add_argument("--max-batch", type=int, nargs="+", default=[8, 4, 1],
                        help="server --max-batch settings to compare (1: no micro-batching)")
    parser.add_argument("--streams", type=int, nargs="+", default=[0],
                        help="server --streams settings to compare (0: the server's default)")
    parser.add_argument("--client", choices=sorted(LOADERS), default="wrk" if shutil.which("wrk") else "httpx",
                        help="load generator: wrk (C, raw bodies; default when installed) or bench/loadgen.py "
                             "(httpx, multipart)")
    args = parser.parse_args()

    results = {"machine": machine(), "requests": args.requests, "concurrency": args.concurrency,
               "client": args.client}
    model, results["model"] = bench_model(args.model)
    workdir = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    images = pick_images(Path(args.data), args.requests, CACHE / f"serve-images-{args.requests}")
    results["images"] = image_summary(images)

    cli_runs = [run_cli(model, images, workdir / "cli-1.csv")]
    results["server"] = [run_server(model, images, args.requests, args.concurrency, b, workdir, args.client, s)
                         for b in args.max_batch for s in args.streams]
    cli_runs.append(run_cli(model, images, workdir / "cli-2.csv"))
    results["cli"] = cli_runs
    results["cli_images_per_s"] = round(sum(r["images_per_s"] for r in cli_runs) / len(cli_runs), 2)
    best = max(results["server"], key=lambda r: r["requests_per_s"])
    results["server_vs_cli"] = round(best["requests_per_s"] / results["cli_images_per_s"], 3)
    results["checks"] = {
        "zero_errors": all(r["errors"] == 0 for r in results["server"]),
        f"rss_growth_under_{RSS_GROWTH_LIMIT_MB}mb": all(r["rss_growth_mb"] < RSS_GROWTH_LIMIT_MB for r in results["server"]),
        f"server_at_least_{TARGET_RATIO:.0%}_of_cli": results["server_vs_cli"] >= TARGET_RATIO,
    }
    results["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]

    out = write_results(Path(args.results).resolve(), results)
    print(report(results))
    print(f"\nchecks: {results['checks']}\nwritten to {out}")
    return 0 if all(results["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
