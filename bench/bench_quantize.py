"""Which int8 settings keep the model's answers: a sweep of ONNX Runtime static quantisation.

    python bench/bench_quantize.py RUN_OR_MODEL.onnx --split RUN/data [--configs all]

For every setting (calibration method, number of calibration images, which nodes stay fp32),
quantises the exported fp32 model with artstyle.engine.quantize (ONNX Runtime's quant_pre_process +
quantize_static, QDQ, per-channel weights) and measures on the held-out test split: top-1
agreement with fp32, the largest probability difference, accuracy fp32 vs int8 overall and per
source group (the file-name prefix before "__"), and model-only speed (batch 32, interleaved
with fp32 so both see the same load). Writes bench/results/quantize.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _provenance import write_results

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "quantize.json"
sys.path.insert(0, str(REPO / "src"))

from artstyle.engine.quantize import QuantSettings, agreement, from_frame, preprocess_files, quantize_file  # noqa: E402

DEFAULT_KEEP = ("model.backbone.blocks.0.", "model.backbone.blocks.6.")
CONFIGS = {
    # name: (method, calibration images, keep stem fp32, keep head fp32[, weight-name prefixes kept fp32])
    "minmax-200-all-int8": ("minmax", 200, False, False),
    "entropy-200-all-int8": ("entropy", 200, False, False),
    "percentile-200-all-int8": ("percentile", 200, False, False),
    "minmax-200-keep-head": ("minmax", 200, False, True),
    "minmax-200-keep-stem-head": ("minmax", 200, True, True),
    "entropy-200-keep-stem-head": ("entropy", 200, True, True),
    "percentile-200-keep-stem-head": ("percentile", 200, True, True),
    "minmax-600-keep-stem-head": ("minmax", 600, True, True),
    # The export's settings for the default model, before its head refit (scripts/train_default.sh).
    "minmax-500-keep-stem-head-blocks-0-6": ("minmax", 500, True, True, DEFAULT_KEEP),
}


def session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def probs(sess, batch: np.ndarray) -> np.ndarray:
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: batch[i:i + 64]})[0] for i in range(0, len(batch), 64)])


def speed(paths: dict[str, Path], batch: np.ndarray, threads: int, rounds: int = 5, calls: int = 6) -> dict:
    """images/s of each model on one batch of 32, rounds interleaved."""
    sessions = {k: session(p, threads) for k, p in paths.items()}
    x = batch[:32]
    totals = dict.fromkeys(sessions, 0.0)
    for s in sessions.values():
        s.run(None, {s.get_inputs()[0].name: x})
    for _ in range(rounds):
        for key, s in sessions.items():
            tick = time.perf_counter()
            for _ in range(calls):
                s.run(None, {s.get_inputs()[0].name: x})
            totals[key] += time.perf_counter() - tick
    return {k: round(rounds * calls * len(x) / t, 1) for k, t in totals.items()}


def group_of(path: Path) -> str:
    """artstyle-v2 keeps CLASS/SOURCE/file.jpg; artstyle-v1 names files SOURCE__hash.jpg."""
    return path.parent.name if path.parent.parent.name in ("anime", "cartoon", "human") else path.name.split("__")[0]


def per_group(fp32: np.ndarray, int8: np.ndarray, files: list[Path], labels, classes) -> dict:
    groups: dict[str, list[int]] = {}
    for i, f in enumerate(files):
        groups.setdefault(group_of(f), []).append(i)
    truth = np.array([classes.index(lab) for lab in labels])
    return {g: {"n": len(idx), "accuracy_fp32": round(float((fp32[idx].argmax(1) == truth[idx]).mean()), 4),
                "accuracy_int8": round(float((int8[idx].argmax(1) == truth[idx]).mean()), 4)}
            for g, idx in sorted(groups.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="the exported fp32 .onnx (with its .json card)")
    parser.add_argument("--split", required=True, help="the run's split folder (train.csv, test.csv)")
    parser.add_argument("--configs", default="all", help="comma-separated names from CONFIGS, or all")
    parser.add_argument("--extra", help="a second held-out set: a CLASS/SOURCE/*.jpg folder (e.g. artstyle-v2); "
                        "its links to v1 images (maybe trained on) are left out")
    parser.add_argument("--extra-size", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()

    from artstyle.engine.data import read_split_dir

    model = Path(args.model)
    card = json.loads(model.with_suffix(".json").read_text())
    splits = read_split_dir(Path(args.split))
    names = list(CONFIGS) if args.configs == "all" else args.configs.split(",")
    largest = max(CONFIGS[n][1] for n in names)
    tick = time.perf_counter()
    pool = from_frame(splits["train"], "train").sample(largest)
    calib_all, _ = preprocess_files(pool, card)
    test = from_frame(splits["test"], "test")
    held, test = preprocess_files(test, card)
    labels = test.labels
    extra = None
    if args.extra:
        from artstyle.infer.sources import images_in_folder
        from artstyle.engine.quantize import ImageSet

        files = [Path(f) for f in images_in_folder(args.extra)
                 if os.path.getsize(f) > 1024]  # v1's images are stored in v2 as links (or link-text files)
        extra = ImageSet(files, [f.parent.parent.name for f in files], args.extra).sample(args.extra_size)
        extra_arrays, extra = preprocess_files(extra, card)
        extra_labels = extra.labels
    print(f"preprocessed {len(calib_all)} calibration + {len(held)} test images in {time.perf_counter() - tick:.0f}s", flush=True)

    info = {"model": str(model), "arch": card.get("arch"), "image_size": card["image_size"],
            "holdout": f"{args.split} test split, {len(held)} images", "threads": args.threads,
            "nproc": len(os.sched_getaffinity(0)), "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
            "results": {}}
    fp32 = probs(session(model, args.threads), held)
    if extra:
        info["extra"] = f"{args.extra}: {len(extra_arrays)} images not in v1, spread over its sources"
        fp32_extra = probs(session(model, args.threads), extra_arrays)
    work = Path(tempfile.mkdtemp(prefix="bench-quantize-"))
    for name in names:
        method, count, stem, head, *rest = CONFIGS[name]
        layers = rest[0] if rest else ()
        out = work / f"{name}.onnx"
        tick = time.perf_counter()
        # The same images for every setting of a given size: the first `count` of one random sample.
        kept = quantize_file(model, out, calib_all[:count], card["input"]["name"],
                             QuantSettings(method=method, calibration_size=count, keep_stem=stem, keep_head=head,
                                          keep_layers=layers))
        seconds = time.perf_counter() - tick
        int8 = probs(session(out, args.threads), held)
        row = {"method": method, "calibration_images": count, "keep_stem": stem, "keep_head": head,
               "keep_layers": list(layers),
               "fp32_nodes": len(kept), "quantise_seconds": round(seconds, 1), "bytes": out.stat().st_size,
               **agreement(fp32, int8, labels, card["classes"]),
               "groups": per_group(fp32, int8, test.files, labels, card["classes"]),
               "images_per_s": speed({"fp32": model, "int8": out}, held, args.threads)}
        if extra:
            int8_extra = probs(session(out, args.threads), extra_arrays)
            row["extra"] = {**agreement(fp32_extra, int8_extra, extra_labels, card["classes"]),
                            "groups": per_group(fp32_extra, int8_extra, extra.files, extra_labels, card["classes"])}
        row["speedup"] = round(row["images_per_s"]["int8"] / row["images_per_s"]["fp32"], 2)
        info["results"][name] = row
        print(f"{name}: agreement {row['top1_agreement']:.4f}, max |dp| {row['max_prob_diff']:.3f}, "
              f"acc fp32 {row['accuracy_fp32']:.4f} int8 {row['accuracy_int8']:.4f}, "
              f"{row['images_per_s']} ({row['speedup']}x), {seconds:.0f}s", flush=True)
        if extra:
            e = row["extra"]
            print(f"    extra: agreement {e['top1_agreement']:.4f}, max |dp| {e['max_prob_diff']:.3f}, "
                  f"acc fp32 {e['accuracy_fp32']:.4f} int8 {e['accuracy_int8']:.4f}", flush=True)
    info["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    write_results(RESULTS, info)


if __name__ == "__main__":
    main()
