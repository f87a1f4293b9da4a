"""Prediction throughput and cold start, side by side in one run.

    python bench/bench_predict.py [--images 2000] [--model M.onnx] [--data ../shared/data/artstyle-v1]

Compares, on the same images and in one process run (so all figures share the machine's load):
  - `artstyle predict DIR` as a user runs it (subprocess: start, model load, decode, inference, CSV)
  - the naive path: the same model as a timm module in eager PyTorch, full PIL decode, batch 32
  - anime-or-not (PyPI): its ONNX model with its own torchvision transforms, one session, batch
    32; and its published `predict_image()` per file (a session per call; it refuses images not
    larger than 224 px, so it runs on the ones it accepts)
  - ONNX Runtime model-only throughput at the model's input size, and the in-process end-to-end
    predictor beside it
  - cold start of `artstyle predict one.jpg` (process start to answer)
Prints a Markdown table and writes bench/results/predict.json. Needs artstyle[train] (torch for
the naive path and, without a shipped model, to export one).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "artstyle-v1"
RESULTS = REPO / "bench" / "results" / "predict.json"
CACHE = Path(tempfile.gettempdir()) / "artstyle-bench"
BATCH = 32


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    import onnxruntime
    import torch

    return {"nproc": len(os.sched_getaffinity(0)), "cpu": cpu, "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__, "torch": torch.__version__,
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()]}


def pick_images(data: Path, count: int, folder: Path) -> list[Path]:
    """``count`` images spread evenly over the sorted dataset (every class), linked into one folder."""
    from artstyle.infer.sources import images_in_folder

    every = images_in_folder(str(data))
    if len(every) < count:
        sys.exit(f"{data} has {len(every)} images, fewer than {count}")
    chosen = [Path(every[int(i * len(every) / count)]) for i in range(count)]
    folder.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(chosen):
        link = folder / f"{i:05d}_{path.name}"
        if not link.exists():
            os.symlink(path, link)
    return sorted(folder.iterdir())


def bench_model(explicit: str | None) -> tuple[Path, Path, str]:
    """(onnx, checkpoint for the PyTorch path, description): the given or shipped model, else a
    freshly exported EfficientNet-Lite0 at 224 px (ImageNet backbone, random head: same cost)."""
    from artstyle.infer.predictor import DEFAULT_MODEL

    if explicit:
        onnx = Path(explicit)
        return onnx, onnx.with_suffix(".safetensors"), f"given: {onnx}"
    if DEFAULT_MODEL.is_file():
        return DEFAULT_MODEL, DEFAULT_MODEL.with_suffix(".safetensors"), "shipped default model"
    onnx = CACHE / "lite0-224" / "model.onnx"
    if not onnx.is_file():
        from artstyle.engine.checkpoint import save_model
        from artstyle.export import export_onnx
        from artstyle.models import create_model

        model, spec = create_model("efficientnet_lite0", ["anime", "cartoon", "human"], image_size=224)
        save_model(onnx.parent / "run" / "weights" / "best", model, spec, metrics={})
        export_onnx(onnx.parent / "run", onnx, with_weights=True)
    return onnx, onnx.with_suffix(".safetensors"), "fresh EfficientNet-Lite0 export at 224 px (no shipped model)"


def timed(fn) -> float:
    tick = time.perf_counter()
    fn()
    return time.perf_counter() - tick


def batches(items, size=BATCH):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def run_cli_predict(onnx: Path, folder: Path, count: int, out: Path) -> float:
    cmd = [sys.executable, "-m", "artstyle", "predict", str(folder), "--model", str(onnx),
           "--format", "csv", "-o", str(out), "--no-progress"]
    seconds = timed(lambda: subprocess.run(cmd, check=True))
    rows = out.read_text().count("\n") - 1
    assert rows == count, f"expected {count} rows, got {rows}"
    return seconds


def run_naive_torch(checkpoint: Path, files: list[Path]) -> float:
    """What a first script does: timm model in eager PyTorch, every image fully decoded."""
    import torch

    from artstyle.engine.checkpoint import load_model
    from artstyle.images import open_image
    from artstyle.preprocess import preprocess

    model, spec, _ = load_model(checkpoint)

    def go():
        with torch.inference_mode():
            for chunk in batches(files):
                x = np.stack([preprocess(open_image(f), spec.image_size, spec.mean, spec.std, spec.crop_pct) for f in chunk])
                torch.softmax(model(torch.from_numpy(x)), 1).numpy()

    return timed(go)


def anime_or_not_model():
    try:
        import anime_or_not
    except ImportError:
        return None
    return Path(anime_or_not.__file__).parent / "anime_or_not_model.onnx"


def run_anime_or_not_batched(model_path: Path, files: list[Path]) -> float:
    """anime-or-not's model and transforms, used well: one session, batches of 32."""
    import onnxruntime as ort
    import torchvision.transforms as T
    from PIL import Image

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    transform = T.Compose([T.Resize((224, 224)), T.ToTensor(), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])

    def go():
        for chunk in batches(files):
            x = np.stack([transform(Image.open(f).convert("RGB")).numpy() for f in chunk])
            session.run(None, {name: x})

    return timed(go)


def run_anime_or_not_published(files: list[Path], limit: int = 40) -> tuple[float, int, int]:
    """``anime_or_not.predict_image`` as published (a new ONNX session per call). Returns
    (seconds, images run, images of the set it accepts)."""
    from PIL import Image
    from anime_or_not import predict_image

    accepted = [f for f in files if min(Image.open(f).size) > 224]
    sample = accepted[:limit]
    return timed(lambda: [predict_image(str(f)) for f in sample]), len(sample), len(accepted)


def run_ort_model_only(clf, files: list[Path], count: int) -> float:
    arrays = np.stack([clf.to_array(f) for f in files[:BATCH]])
    clf.run(arrays)  # warm-up
    return timed(lambda: [clf.run(arrays) for _ in range(count // BATCH)]) * count / (count // BATCH * BATCH)


def run_predictor_in_process(clf, files: list[Path]) -> float:
    return timed(lambda: sum(1 for _ in clf.predict_iter(files)))


def cold_start(onnx: Path | None, image: Path, repeats: int = 5) -> list[float]:
    cmd = [sys.executable, "-m", "artstyle", "predict", str(image)] + (["--model", str(onnx)] if onnx else [])
    return [timed(lambda: subprocess.run(cmd, check=True, capture_output=True)) for _ in range(repeats)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--model", help="an exported .onnx (default: the shipped model, else a fresh Lite0 at 224)")
    args = parser.parse_args()

    import artstyle
    from artstyle.infer.predictor import DEFAULT_MODEL

    info = {"machine": machine(), "images": args.images, "data": str(args.data), "batch": BATCH}
    onnx, checkpoint, description = bench_model(args.model)
    clf = artstyle.load(onnx)
    info["model"] = {"description": description, "image_size": clf.image_size, "arch": clf.card.get("arch"),
                     "onnx_sha256": clf.card["onnx_sha256"], "threads": clf.session.get_session_options().intra_op_num_threads,
                     "decode_workers": clf.workers}
    work = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    files = pick_images(Path(args.data), args.images, work / "images")
    n = len(files)
    print(f"{n} images, model: {description} ({clf.image_size}px), {info['machine']['nproc']} CPUs "
          f"({info['machine']['cpu']}), load {info['machine']['load_average_at_start']}", flush=True)

    rows = {}

    def record(key, label, seconds, count=n, note=""):
        rows[key] = {"what": label, "images": count, "seconds": round(seconds, 2),
                     "images_per_s": round(count / seconds, 1), "note": note}
        print(f"  {label}: {count / seconds:.1f} img/s ({seconds:.1f}s)", flush=True)

    record("artstyle_predict_cli", "`artstyle predict DIR` (process start to CSV written)",
           run_cli_predict(onnx, work / "images", n, work / "out.csv"))
    record("predictor_in_process", "predictor end-to-end, in process (decode + inference)", run_predictor_in_process(clf, files))
    record("ort_model_only", f"ONNX Runtime model only, batch {BATCH}, {clf.image_size}px", run_ort_model_only(clf, files, n))
    aon = anime_or_not_model()
    if aon:
        record("anime_or_not_batched", "anime-or-not model, one session, batch 32 (its transforms)",
               run_anime_or_not_batched(aon, files))
        seconds, ran, accepted = run_anime_or_not_published(files)
        record("anime_or_not_published", "anime-or-not `predict_image()` as published", seconds, ran,
               f"a new session per call; accepts only images > 224 px: {accepted} of {n}")
    else:
        info["anime_or_not"] = "not installed (pip install anime-or-not)"
    record("naive_torch", f"naive: timm eager PyTorch, full PIL decode, batch {BATCH}", run_naive_torch(checkpoint, files))

    cold = cold_start(onnx, files[0])
    cold_default = cold_start(None, files[0]) if onnx == DEFAULT_MODEL else None
    info["cold_start_s"] = {"model_given": [round(t, 3) for t in cold], "median": round(statistics.median(cold), 3)}
    if cold_default:
        info["cold_start_s"]["default_model_median"] = round(statistics.median(cold_default), 3)

    cli = rows["artstyle_predict_cli"]["images_per_s"]
    ratios = {
        "cli_vs_naive": round(cli / rows["naive_torch"]["images_per_s"], 2),
        "e2e_over_model_only": round(rows["predictor_in_process"]["images_per_s"] / rows["ort_model_only"]["images_per_s"], 3),
    }
    if aon:
        ratios["cli_vs_anime_or_not_batched"] = round(cli / rows["anime_or_not_batched"]["images_per_s"], 2)
        ratios["cli_vs_anime_or_not_published"] = round(cli / rows["anime_or_not_published"]["images_per_s"], 2)
    info.update(results=rows, ratios=ratios)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(info, indent=2) + "\n")
    print_table(info)


def print_table(info: dict) -> None:
    m = info["machine"]
    print(f"\n{info['images']} images from artstyle-v1; model: {info['model']['description']}, "
          f"{info['model']['image_size']} px; {m['nproc']} CPUs ({m['cpu']}), load average at start {m['load_average_at_start']}\n")
    print("| path | images | seconds | images/s |\n|---|---:|---:|---:|")
    for row in info["results"].values():
        note = f" ({row['note']})" if row["note"] else ""
        print(f"| {row['what']}{note} | {row['images']} | {row['seconds']} | {row['images_per_s']} |")
    cold = info["cold_start_s"]
    print(f"\ncold start `artstyle predict one.jpg`: median {cold['median']} s of {cold['model_given']}"
          + (f"; with the default model {cold['default_model_median']} s" if "default_model_median" in cold else ""))
    print("ratios: " + ", ".join(f"{k} = {v}" for k, v in info["ratios"].items()))


if __name__ == "__main__":
    main()
