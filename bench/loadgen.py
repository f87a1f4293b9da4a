"""A bounded load generator for ``artstyle serve``: N requests from C concurrent clients, to
127.0.0.1 only. Run it as its own process so that it does not share the server's interpreter.

    python bench/loadgen.py --url http://127.0.0.1:8000 --images DIR --requests 2000 --concurrency 16

Each request is one image (cycling through --images) as a multipart upload (--raw: the raw
body). Prints one JSON object: requests, errors, status counts, latency p50/p90/p99/max (ms)
and requests/s; exits 1 when any request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import httpx

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"}
ALLOWED_HOSTS = {"127.0.0.1"}


def read_images(paths: list[str]) -> list[tuple[str, bytes]]:
    files = []
    for arg in paths:
        path = Path(arg)
        found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
        files += [(p.name, p.read_bytes()) for p in found]
    if not files:
        sys.exit(f"loadgen: no images in {' '.join(paths)}")
    return files


def request_args(name: str, data: bytes, raw: bool) -> dict:
    if raw:
        return {"content": data, "headers": {"Content-Type": "application/octet-stream"}}
    return {"files": [("files", (name, data, "application/octet-stream"))]}


async def client(http: httpx.AsyncClient, url: str, jobs, raw: bool, latencies: list, statuses: Counter,
                 failures: list) -> None:
    for name, data in jobs:
        start = time.perf_counter()
        try:
            response = await http.post(url, **request_args(name, data, raw))
            ok = response.status_code == 200 and "results" in response.json()
            statuses[response.status_code] += 1
            if not ok:
                failures.append(f"{name}: HTTP {response.status_code} {response.text[:200]}")
        except httpx.HTTPError as exc:
            statuses[type(exc).__name__] += 1
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
        latencies.append(time.perf_counter() - start)


async def run_load(base_url: str, images: list[tuple[str, bytes]], requests: int, concurrency: int,
                   raw: bool = False, timeout: float = 60.0) -> dict:
    url = base_url.rstrip("/") + "/v1/predict"
    # One shared iterator: every client takes the next request as soon as it is free.
    jobs = iter(itertools.islice(itertools.cycle(images), requests))
    latencies, statuses, failures = [], Counter(), []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http, url, jobs, raw, latencies, statuses, failures) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return summary(latencies, statuses, failures, wall, concurrency, raw)


def percentile(sorted_values: list[float], q: float) -> float:
    return statistics.quantiles(sorted_values, n=1000, method="inclusive")[int(q * 10) - 1] if len(sorted_values) > 1 else sorted_values[0]


def summary(latencies, statuses, failures, wall, concurrency, raw) -> dict:
    ms = sorted(v * 1000 for v in latencies)
    return {
        "requests": len(latencies), "concurrency": concurrency, "body": "raw" if raw else "multipart",
        "errors": len(failures), "status": {str(k): v for k, v in statuses.items()}, "first_errors": failures[:5],
        "wall_s": round(wall, 3), "requests_per_s": round(len(latencies) / wall, 2),
        "latency_ms": {"p50": round(percentile(ms, 50), 2), "p90": round(percentile(ms, 90), 2),
                       "p99": round(percentile(ms, 99), 2), "max": round(ms[-1], 2)},
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8000 (127.0.0.1 only)")
    parser.add_argument("--images", nargs="+", required=True, help="image files or folders to send, in turn")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--raw", action="store_true", help="send the image as the raw body, not multipart")
    args = parser.parse_args(argv)
    if urlsplit(args.url).hostname not in ALLOWED_HOSTS:
        parser.error("this load generator only sends to 127.0.0.1")
    result = asyncio.run(run_load(args.url, read_images(args.images), args.requests, args.concurrency, args.raw))
    print(json.dumps(result))
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
