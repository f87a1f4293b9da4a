"""Does a model rely on shortcuts? Accuracy of an exported model on a labelled split, clean and
under perturbations that change what the artstyle-v1 classes differ in besides style:
resolution, compression, colour and framing. Also whether test-time augmentation (averaging the
image and its mirror) pays. Torch-free: runs the ONNX model through ``artstyle.load``.

    python bench/bench_robustness.py --model src/artstyle/assets/default.onnx \
        --split runs/default/data/test.csv [--limit 600]

Prints a Markdown table and writes bench/results/robustness.json.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
import pandas as pd
from _provenance import write_results
from PIL import Image, ImageOps

import artstyle
from artstyle.images import open_image

ROOT = Path(__file__).resolve().parents[1]


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def rescale(img: Image.Image, side: int) -> Image.Image:
    """Down to `side` px on the long side and back: a low-resolution source."""
    w, h = img.size
    f = side / max(w, h)
    return img.resize((max(1, round(w * f)), max(1, round(h * f))), Image.Resampling.BILINEAR).resize((w, h))


PERTURBATIONS = {
    "clean": lambda im: im,
    "downscale to 48 px and back": lambda im: rescale(im, 48),
    "upscale x3 (large image)": lambda im: im.resize((im.width * 3, im.height * 3), Image.Resampling.BICUBIC),
    "JPEG quality 20": lambda im: jpeg(im, 20),
    "grayscale": lambda im: ImageOps.grayscale(im).convert("RGB"),
    "white border 25%": lambda im: ImageOps.expand(im, border=im.width // 4, fill="white"),
    "black letterbox": lambda im: ImageOps.pad(im, (im.width * 16 // 9, im.height), color="black"),
}


def accuracy(clf, images, labels, tta: bool = False) -> float:
    preds = clf.predict(images)
    probs = np.array([[p.probs[c] for c in clf.classes] for p in preds])
    if tta:
        mirrored = clf.predict([ImageOps.mirror(im) for im in images])
        probs = (probs + np.array([[p.probs[c] for c in clf.classes] for p in mirrored])) / 2
    return float((np.array(clf.classes)[probs.argmax(1)] == np.array(labels)).mean())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None, help="exported .onnx (default: the shipped model)")
    parser.add_argument("--split", type=Path, required=True, help="CSV with path,label (e.g. a run's data/test.csv)")
    parser.add_argument("--limit", type=int, default=0, help="stratified sample of this many images (0 = all)")
    args = parser.parse_args()

    frame = pd.read_csv(args.split)
    if args.limit and args.limit < len(frame):
        frame = frame.groupby("label", group_keys=False).sample(frac=args.limit / len(frame), random_state=0)
    clf = artstyle.load(args.model)
    images = [open_image(p) for p in frame["path"]]
    labels = frame["label"].tolist()
    results = {name: accuracy(clf, [f(im) for im in images], labels) for name, f in PERTURBATIONS.items()}
    results["clean + mirror TTA"] = accuracy(clf, images, labels, tta=True)
    out = {"model": str(clf.path), "split": str(args.split), "images": len(images), "accuracy": results}
    write_results(ROOT / "bench/results/robustness.json", out)
    print(f"{len(images)} images from {args.split}\n\n| condition | accuracy |\n|---|---|")
    for name, acc in results.items():
        print(f"| {name} | {acc:.4f} |")


if __name__ == "__main__":
    main()
