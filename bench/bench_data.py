"""Benchmark the dataset pipeline on the real artstyle-v1 images.

    python bench/bench_data.py [--data ../shared/data/artstyle-v1] [--sample 600]

Times ``data scan`` (images/s with all workers, and where one image's time goes: read + sha256,
header, decode, phash), ``data split`` and ``data audit`` (from the manifest), measures how far
common edits move a perceptual hash (the basis of the near-duplicate threshold), prints a
Markdown table and writes bench/results/data.json.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import platform
import tempfile
import time
from pathlib import Path

import imagehash
import numpy as np
import pandas as pd
from _provenance import write_results
from PIL import Image

from artstyle import data
from artstyle.data.duplicates import near_duplicate_pairs
from artstyle.data.measure import PHASH_DRAFT_SIZE
from artstyle.data.scanner import available_cpus
from artstyle.images import open_image, read_header

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "artstyle-v1"


def per_image_breakdown(paths: list[str]) -> dict[str, float]:
    """Milliseconds per image for each stage of a scan, measured one stage at a time, one process."""
    for p in paths[:20]:  # warm up: plugin imports and first-call costs are not per-image costs
        imagehash.phash(open_image(p, draft_size=PHASH_DRAFT_SIZE))
        open_image(p)
    timings = {}
    start = time.perf_counter()
    blobs = [Path(p).read_bytes() for p in paths]
    timings["read file"] = time.perf_counter() - start
    start = time.perf_counter()
    for blob in blobs:
        hashlib.sha256(blob).hexdigest()
    timings["sha256"] = time.perf_counter() - start
    start = time.perf_counter()
    for p, blob in zip(paths, blobs):
        read_header(blob, name=p)
    timings["header (Pillow open)"] = time.perf_counter() - start
    start = time.perf_counter()
    images = [open_image(blob, name=p, draft_size=PHASH_DRAFT_SIZE) for p, blob in zip(paths, blobs)]
    timings[f"decode, draft >= {PHASH_DRAFT_SIZE} px"] = time.perf_counter() - start
    start = time.perf_counter()
    for image in images:
        imagehash.phash(image)
    timings["phash"] = time.perf_counter() - start
    start = time.perf_counter()
    for p, blob in zip(paths, blobs):
        open_image(blob, name=p)
    timings["(for comparison) full decode"] = time.perf_counter() - start
    return {stage: seconds / len(paths) * 1000 for stage, seconds in timings.items()}


def phash_edit_distances(paths: list[str]) -> dict[str, dict[str, float]]:
    """How many bits common edits move a phash: the near-duplicate threshold must cover these."""

    def phash_of(image):
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        return imagehash.phash(open_image(buffer.getvalue(), draft_size=PHASH_DRAFT_SIZE))

    edits = {
        "re-encoded JPEG q=60": lambda im: Image.open(_jpeg(im, 60)),
        "resized to 50%": lambda im: im.resize((max(1, im.width // 2), max(1, im.height // 2)), Image.LANCZOS),
        "2% border crop": lambda im: im.crop(
            (im.width // 50, im.height // 50, im.width - im.width // 50, im.height - im.height // 50)
        ),
        "horizontal flip (not a duplicate)": lambda im: im.transpose(Image.FLIP_LEFT_RIGHT),
    }
    result = {}
    originals = [open_image(p) for p in paths]
    base = [phash_of(im) for im in originals]
    for name, edit in edits.items():
        distances = np.array([h - phash_of(edit(im).convert("RGB")) for h, im in zip(base, originals)])
        result[name] = {
            "median": float(np.median(distances)),
            "p95": float(np.percentile(distances, 95)),
            "max": int(distances.max()),
            "share_within_4": float((distances <= 4).mean()),
        }
    return result


def _jpeg(image, quality):
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return buffer


def distinct_pairs_by_threshold(manifest: pd.DataFrame) -> dict[int, dict[str, int]]:
    """In the (already de-duplicated) dataset: pairs and cross-class pairs within each distance."""
    pairs = near_duplicate_pairs(manifest, 10)
    cross = manifest["label"].to_numpy()[pairs["i"]] != manifest["label"].to_numpy()[pairs["j"]]
    groups = {}
    for t in (2, 4, 6, 8, 10):
        sizes = np.bincount(data.duplicate_groups(manifest, t))
        groups[t] = {
            "pairs": int((pairs["distance"] <= t).sum()),
            "cross_class_pairs": int(cross[pairs["distance"] <= t].sum()),
            "largest_group": int(sizes.max()),
        }
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--sample", type=int, default=600, help="images for the per-stage breakdown")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "data.json")
    args = parser.parse_args()

    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bench-data-"))
    runs = []
    for _ in range(2):  # the first run may read from disk; the second shows the warm page cache
        start = time.perf_counter()
        manifest = data.scan(args.data, work / "manifest.csv", progress=False)
        runs.append(time.perf_counter() - start)
    n = len(manifest)

    sample = manifest["path"].sample(min(args.sample, n), random_state=0).tolist()
    breakdown = per_image_breakdown(sample)
    start = time.perf_counter()
    parts = data.split(work / "manifest.csv", work / "splits")
    split_seconds = time.perf_counter() - start
    start = time.perf_counter()
    summary = data.audit(work / "manifest.csv", work / "audit", progress=False)
    audit_seconds = time.perf_counter() - start
    edits = phash_edit_distances(sample[:200])
    thresholds = distinct_pairs_by_threshold(manifest)

    cpus = available_cpus()
    stage_ms = sum(v for k, v in breakdown.items() if not k.startswith("(for"))
    results = {
        "data": str(args.data),
        "machine": {
            "cpus": cpus,
            "processor": platform.processor() or platform.machine(),
            "load_average_before": [round(x, 2) for x in load_before],
        },
        "scan": {
            "images": n,
            "workers": cpus,
            "seconds": [round(r, 2) for r in runs],
            "images_per_s": [round(n / r, 1) for r in runs],
        },
        "scan_breakdown_ms_per_image_one_process": {k: round(v, 3) for k, v in breakdown.items()},
        "split": {
            "seconds": round(split_seconds, 2),
            "sizes": {k: len(v) for k, v in parts.items()},
            "images_in_duplicate_groups": parts.report["images_in_duplicate_groups"],
        },
        "audit": {
            "seconds": round(audit_seconds, 2),
            "shortcut": summary["shortcut"],
            "duplicate_pairs": summary["duplicate_pairs"],
        },
        "phash_edit_distance": edits,
        "dataset_pairs_by_threshold": thresholds,
    }
    write_results(args.output, results)

    shortcut = summary["shortcut"]
    print(f"## artstyle data on {args.data.name} ({n:,} images, {cpus} CPUs, load before {load_before[0]:.2f})\n")
    print("| step | time | rate |\n|---|---:|---:|")
    for k, r in enumerate(runs):
        print(f"| scan, run {k + 1} ({'first' if k == 0 else 'warm cache'}) | {r:.1f} s | {n / r:,.0f} images/s |")
    print(f"| split (70/15/15, duplicate groups) | {split_seconds:.1f} s | |")
    print(f"| audit (from manifest) | {audit_seconds:.1f} s | |")
    print(f"\n### Where a scan's time goes (one process, {len(sample)} images)\n")
    print("| stage | ms / image | share |\n|---|---:|---:|")
    for stage, ms in breakdown.items():
        share = "" if stage.startswith("(for") else f"{ms / stage_ms:.0%}"
        print(f"| {stage} | {ms:.2f} | {share} |")
    print(f"| sum of stages | {stage_ms:.2f} | = {1000 / stage_ms:,.0f} images/s per core |")
    print(
        f"\n### Shortcut check: metadata-only accuracy {shortcut['metadata_accuracy']:.1%} "
        f"vs majority baseline {shortcut['majority_baseline']:.1%}\n"
    )
    print("| feature alone | accuracy |\n|---|---:|")
    for feature, acc in shortcut["single_feature_accuracy"].items():
        print(f"| {feature} | {acc:.1%} |")
    print("\n### phash bits moved by edits (200 images)\n")
    print("| edit | median | p95 | max | within 4 |\n|---|---:|---:|---:|---:|")
    for name, d in edits.items():
        print(f"| {name} | {d['median']:.0f} | {d['p95']:.0f} | {d['max']} | {d['share_within_4']:.0%} |")
    print("\n### Pairs in the de-duplicated dataset by threshold\n")
    print("| distance <= | pairs | across classes | largest group |\n|---:|---:|---:|---:|")
    for t, d in thresholds.items():
        print(f"| {t} | {d['pairs']:,} | {d['cross_class_pairs']:,} | {d['largest_group']:,} |")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
