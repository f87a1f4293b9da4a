"""Where an image's CPU goes before the model: each preprocessing step, timed on its own.

    python bench/bench_preprocess.py [--images 400] [--data ../shared/data/artstyle-v1] [--model M.onnx]

Single-threaded CPU time per image (``time.thread_time``, so other load on the machine inflates
it far less than wall time), on the same images, for three ways to make the model's input:

- now: ``images.open_pixels`` (read the file; a plain JPEG decoded by libjpeg-turbo through
  simplejpeg straight to an array at draft size), then the resize and centre crop in OpenCV
  (``preprocess.crop_pixels``);
- Pillow's decode (the predictor until the fast path): open (header parsed in Python), JPEG
  decode at draft size, EXIF orientation and RGB, then the same OpenCV resize of the PIL image;
- before PREPROCESS_VERSION 2: Pillow's decode, Pillow's bilinear resize of the same box, then
  normalisation to float32 CHW in numpy (a model exported with --float-input still needs it; the
  default export takes the uint8 pixels and normalises inside the graph).

Beside them, the model's own CPU time per image (ONNX Runtime, batch 32, called as one of the
predictor's streams calls it: on its own thread). Their ratio is the ceiling of end to end over
model-only on a machine whose cores are all busy with the model. Writes
bench/results/preprocess.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from _provenance import write_results
from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "preprocess.json"
BATCH = 32
STEPS = ("open_pixels", "resize_opencv", "pillow_open", "pillow_decode", "pillow_exif", "resize_opencv_from_pil",
         "resize_pillow", "normalize")


def pillow_resize(img: Image.Image, size: int, crop_pct: float) -> Image.Image:
    """The resize before PREPROCESS_VERSION 2: Pillow's bilinear (antialiased) on the same box."""
    from artstyle.preprocess import crop_box

    left, top, side = crop_box(*img.size, crop_pct)
    return img.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side),
                      reducing_gap=3.0)


def step_times(files: list[str], clf) -> dict[str, float]:
    """Mean CPU milliseconds per image of each step. The fast path and Pillow's take turns at
    going first on an image, so neither always pays for the first read of the file."""
    totals = dict.fromkeys(STEPS, 0.0)
    for i, path in enumerate(files):
        ways = (fast_steps, pillow_steps) if i % 2 == 0 else (pillow_steps, fast_steps)
        for way in ways:
            way(path, clf, totals)
    return {k: round(v / len(files) * 1000, 3) for k, v in totals.items()}


def fast_steps(path: str, clf, totals: dict) -> None:
    """What the predictor does now: ``open_pixels``, then OpenCV's resize of the array."""
    from artstyle.images import open_pixels
    from artstyle.preprocess import crop_pixels

    tick = time.thread_time()
    decoded = open_pixels(path, draft_size=clf.draft_size)
    tick = lap(totals, "open_pixels", tick)
    crop_pixels(decoded, clf.image_size, clf.crop_pct)
    lap(totals, "resize_opencv", tick)


def pillow_steps(path: str, clf, totals: dict) -> None:
    """Pillow's decode, then OpenCV's resize of the PIL image (the predictor before the fast
    path), then Pillow's resize and the normalisation (before PREPROCESS_VERSION 2)."""
    from artstyle.images import to_rgb
    from artstyle.preprocess import crop_pixels, normalize

    tick = time.thread_time()
    img = Image.open(path)
    tick = lap(totals, "pillow_open", tick)
    if img.format == "JPEG":
        img.draft("RGB", (clf.draft_size, clf.draft_size))
    img.load()
    tick = lap(totals, "pillow_decode", tick)
    ImageOps.exif_transpose(img, in_place=True)
    img = to_rgb(img)
    tick = lap(totals, "pillow_exif", tick)
    crop_pixels(img, clf.image_size, clf.crop_pct)
    tick = lap(totals, "resize_opencv_from_pil", tick)
    crop = pillow_resize(img, clf.image_size, clf.crop_pct)
    tick = lap(totals, "resize_pillow", tick)
    normalize(crop, clf.mean, clf.std)
    lap(totals, "normalize", tick)


def lap(totals: dict, key: str, tick: float) -> float:
    now = time.thread_time()
    totals[key] += now - tick
    return now


def model_cpu_ms(clf, files: list[str], calls: int = 6) -> float:
    batch = np.stack([clf.to_array(f) for f in files[:BATCH]])
    clf.run(batch)  # warm-up
    tick = time.process_time()
    for _ in range(calls):
        clf.run(batch)
    return round((time.process_time() - tick) / (calls * BATCH) * 1000, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "artstyle-v1"))
    parser.add_argument("--model", help="an exported .onnx (default: the shipped default model)")
    args = parser.parse_args()

    import artstyle
    from artstyle.infer.sources import images_in_folder

    clf = artstyle.load(args.model)
    from artstyle.images import resolve_link_stub

    every = images_in_folder(args.data)
    files = [resolve_link_stub(every[int(i * len(every) / args.images)]) for i in range(min(args.images, len(every)))]
    steps = step_times(files, clf)
    sizes = sorted(min(Image.open(f).size) for f in files)
    result = {"command": "python bench/bench_preprocess.py " + " ".join(
                  f"--{k} {v}" for k, v in vars(args).items() if v is not None),
              "model": clf.path.name, "image_size": clf.image_size, "images": len(files),
              "median_short_side_px": sizes[len(sizes) // 2], "cpu_ms_per_image": steps,
              "model_input": "uint8 pixels" if clf.pixel_input else "float32, normalised"}
    now = steps["open_pixels"] + steps["resize_opencv"]
    pillow = steps["pillow_open"] + steps["pillow_decode"] + steps["pillow_exif"]
    pillow_decode = pillow + steps["resize_opencv_from_pil"]
    before = pillow + steps["resize_pillow"] + steps["normalize"]
    model_ms = model_cpu_ms(clf, files)
    result.update({
        "preprocess_total_ms": round(now, 3),
        "preprocess_total_ms_pillow_decode": round(pillow_decode, 3),
        # "before" with today's EXIF step: the old one also copied every image (~0.02-0.03 ms more).
        "preprocess_total_ms_before_v2": round(before, 3),
        "model_cpu_ms_per_image": model_ms,
        "ceiling_end_to_end_over_model_only": round(model_ms / (model_ms + now), 3),
        "ceiling_pillow_decode": round(model_ms / (model_ms + pillow_decode), 3),
        "ceiling_before_v2": round(model_ms / (model_ms + before), 3),
    })
    write_results(RESULTS, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
