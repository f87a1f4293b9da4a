"""Export a trained checkpoint to ONNX for the torch-free predictor (``artstyle.infer``).

``export_onnx`` writes ``NAME.onnx`` (probabilities out, dynamic batch) and ``NAME.json``, the
model card the predictor reads: classes, preprocessing, provenance, metrics, the ONNX file's
sha256 and the result of a parity check against PyTorch on real images. Nothing is written
unless the parity check passes.

The model takes the resized image itself, uint8 NHWC (``ProbabilityModel``), and normalises it inside
the graph: the predictor's decode threads hand over the pixels as decoded, a quarter of the
bytes of a float batch, and ONNX Runtime does the arithmetic next to the first convolution.
``pixel_input=False`` exports the classic float32 NCHW input instead, for runtimes that
normalise for themselves. Needs ``artstyle[train]`` (torch, timm, onnx, onnxscript).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from .._files import sha256_file  # also quantize's, by this name
from ..errors import ArtstyleError, ImageLoadError
from ..images import walk_images
from ..preprocess import PREPROCESS_VERSION, load_pixels, model_input, normalize, to_crop

log = logging.getLogger("artstyle")

DEFAULT_OPSET = 18
PARITY_TOLERANCE = 1e-4
PARITY_MAX_IMAGES = 16
INPUT_NAME = "input"  # float32 NCHW, normalised (pixel_input=False)
PIXELS_NAME = "pixels"  # uint8 NHWC, as decoded (the default)
OUTPUT_NAME = "probs"


class ProbabilityModel(torch.nn.Module):
    """The classifier followed by softmax at a temperature, so the ONNX graph answers with
    calibrated probabilities and every runtime agrees on them without re-implementing either.

    With ``mean`` and ``std`` it takes uint8 NHWC pixels and normalises them itself, computed as
    ``preprocess.normalize`` computes it (x * scale + bias, float32), so that a PyTorch evaluation
    and the exported model see the same numbers. The classifier stays ``model`` either way: the
    int8 head refit finds its parameters as ``model.<name>`` in the graph."""

    def __init__(self, model: torch.nn.Module, temperature: float = 1.0, mean=None, std=None):
        super().__init__()
        self.model = model
        self.temperature = float(temperature)
        self.pixel_input = mean is not None
        if self.pixel_input:
            self.mean, self.std = list(mean), list(std)
            std = torch.tensor(std, dtype=torch.float32)
            self.register_buffer("pixel_scale", (1.0 / (255.0 * std)).view(1, 3, 1, 1))
            self.register_buffer("pixel_bias", (-torch.tensor(mean, dtype=torch.float32) / std).view(1, 3, 1, 1))

    def forward(self, x):
        if self.pixel_input:
            # contiguous(): NCHW strides, so the exporter writes the flatten as one Reshape.
            x = x.permute(0, 3, 1, 2).contiguous().float() * self.pixel_scale + self.pixel_bias
        return torch.softmax(self.model(x) / self.temperature, dim=1)


def export_onnx(
    run_or_checkpoint: str | os.PathLike,
    output: str | os.PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    parity_images=None,
    tolerance: float = PARITY_TOLERANCE,
    with_weights: bool = False,
    temperature: float | None = None,
    cv_metrics: str | os.PathLike | None = None,
    pixel_input: bool = True,
) -> dict:
    """Export a run directory or checkpoint to ``output`` (.onnx) and its model card
    (``output`` with .json). Returns the model card.

    ``parity_images``: image files or folders for the parity check (default: up to 16 images
    from the data the model was trained on, else generated ones, recorded as such in the card).
    ``with_weights``: also copy the checkpoint's safetensors beside the ONNX, so that
    ``artstyle predict --explain`` can compute Grad-CAM for this exported model.
    ``temperature``: divides the logits before softmax (default: the checkpoint's, fitted on its
    validation split, else 1). ``cv_metrics``: a ``crossval`` metrics.json; its per-group table goes
    into the card, and its temperature (fitted on held-out groups) is used unless one is given.
    ``pixel_input``: the model takes uint8 NHWC pixels and normalises them itself (default), or,
    when False, normalised float32 NCHW.
    Raises ``ArtstyleError`` when the ONNX model disagrees with PyTorch by more than ``tolerance``.
    """
    from .checkpoint import load_model, resolve_weights

    output = Path(output)
    if output.suffix.lower() != ".onnx":
        raise ArtstyleError(f"{output}: the output must be a .onnx file")
    weights = resolve_weights(run_or_checkpoint)
    model, spec, meta = load_model(weights)
    crossval = read_crossval(cv_metrics) if cv_metrics else None
    if temperature is None:
        temperature = (crossval or {}).get("temperature") or meta.get("temperature") or 1.0
    if not temperature > 0:
        raise ArtstyleError(f"temperature must be positive, got {temperature}")
    normalization = (spec.mean, spec.std) if pixel_input else (None, None)
    wrapped = ProbabilityModel(model, temperature, *normalization).eval()

    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=f".{output.stem}.") as tmp:
        tmp_onnx = Path(tmp) / output.name
        tick = time.perf_counter()
        write_onnx(wrapped, spec.image_size, tmp_onnx, opset, pixel_input)
        log.info(f"exported ONNX in {time.perf_counter() - tick:.1f}s")
        batch, sources = parity_batch(parity_images, meta, spec, pixel_input)
        parity = check_parity(wrapped, tmp_onnx, batch, tolerance)
        parity["images"] = [Path(s).name for s in sources]  # names only: no local paths in a shipped card
        card = model_card(spec, meta, weights, tmp_onnx, opset, parity, pixel_input)
        card["temperature"] = float(temperature)
        if crossval:
            card["crossval"] = crossval
        if with_weights:
            card["weights_sha256"] = sha256_file(weights)
        # Card first, then the ONNX, so a predictor never sees a new model with an old card.
        card_path = output.with_suffix(".json")
        card_path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        if with_weights:
            shutil.copyfile(weights, output.with_suffix(".safetensors"))
        os.replace(tmp_onnx, output)
    remove_stale_int8(output, card["onnx_sha256"])
    return card


def remove_stale_int8(output: Path, sha256: str) -> None:
    """An int8 model left beside ``output`` from an earlier export would be what precision "auto"
    loads, answering for a model that is gone: remove it (``export --int8`` makes a new one)."""
    from ..infer.predictor import int8_path

    int8 = int8_path(output)
    if not int8.is_file():
        return
    try:
        made_from = json.loads(int8.with_suffix(".json").read_text(encoding="utf-8"))["quantization"]["fp32_onnx_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        made_from = None
    if made_from != sha256:
        int8.unlink()
        int8.with_suffix(".json").unlink(missing_ok=True)
        log.warning(f"removed {int8}: it was made from an earlier {output.name}; re-export with --int8 for a new one")


def write_onnx(model: torch.nn.Module, image_size: int, path: Path, opset: int, pixel_input: bool = True) -> None:
    """torch.export-based ONNX export, batch dimension dynamic, weights inside the one file."""
    if pixel_input:
        example, name = torch.zeros(2, image_size, image_size, 3, dtype=torch.uint8), PIXELS_NAME
    else:
        example, name = torch.zeros(2, 3, image_size, image_size), INPUT_NAME
    # The exporter prints progress lines on stdout, which would corrupt output a script parses;
    # its warnings (deprecations inside torch) are not the user's concern either.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model, (example,), dynamo=True, opset_version=opset,
            input_names=[name], output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim("batch", min=1)},), verbose=False,
        )
        program.save(str(path), external_data=False)
    strip_provenance(path)


def strip_provenance(path: Path) -> None:
    """Drop what the exporter records about the exporting machine: each node's Python stack
    trace (local file paths and line numbers), FX node text and doc strings. They make no
    difference to the model, but would leak paths into a shipped file and change its sha256
    with every edit of an unrelated line, so the recipe could not reproduce it byte for byte."""
    import onnx

    model = onnx.load(str(path))
    graphs = [model.graph] + [f for f in model.functions]
    for graph in graphs:
        for node in graph.node:
            del node.metadata_props[:]
            node.doc_string = ""
    onnx.save(model, str(path))


def find_parity_files(parity_images, meta: dict) -> list[Path]:
    """Explicit files/folders, else the training data folder named in the checkpoint's config."""
    if parity_images:
        roots = [Path(p) for p in ([parity_images] if isinstance(parity_images, (str, os.PathLike)) else parity_images)]
    else:
        data = (meta.get("config") or {}).get("data") or ""
        roots = [Path(data) if Path(data).is_dir() else Path(data).parent] if data else []
    files = []
    for root in roots:
        if (root / "train.csv").is_file():  # a split dir: its images are listed, not contained
            from ..data import read_manifest

            files += sorted(Path(p) for p in read_manifest(root / "train.csv")["path"] if p)
        elif root.is_dir():
            files += sorted(Path(p) for p in walk_images(root))
        elif root.is_file():
            files.append(root)
        elif parity_images:
            raise ArtstyleError(f"{root}: parity image or folder not found")
    if len(files) > PARITY_MAX_IMAGES:
        # Evenly spread over the sorted list: with one folder per class that covers every class.
        step = len(files) / PARITY_MAX_IMAGES
        files = [files[int(i * step)] for i in range(PARITY_MAX_IMAGES)]
    return files


def generated_images(count: int = 4):
    """Stand-ins when no real image is at hand: smooth gradients with shapes, not noise,
    so activations are in a realistic range."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    for i in range(count):
        base = np.linspace(0, 255, 256, dtype=np.float32)
        arr = np.stack([np.add.outer(base, base * (c + 1) / 3) / 2 for c in range(3)], axis=-1)
        img = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(6):
            x, y = rng.integers(0, 200, 2)
            draw.ellipse([x, y, x + 50, y + 40], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        yield f"<generated {i}>", img


def parity_batch(parity_images, meta: dict, spec, pixel_input: bool = True) -> tuple[np.ndarray, list[str]]:
    """The model's inputs for the parity images, decoded exactly as the predictor decodes them:
    uint8 NHWC pixels, or normalised float32 NCHW without ``pixel_input``."""
    arrays, names = [], []
    for path in find_parity_files(parity_images, meta):
        try:
            pixels = load_pixels(path, spec.image_size, spec.crop_pct)
            arrays.append(model_input(pixels, spec.mean, spec.std, pixel_input))
        except ImageLoadError as exc:
            log.warning(f"parity check skips {exc}")
            continue
        names.append(str(path))
    if not arrays:
        if parity_images:
            raise ArtstyleError("no readable image among the parity images")
        log.warning("no training images found for the parity check; using generated images")
        for name, img in generated_images():
            pixels = to_crop(img, spec.image_size, spec.crop_pct, name=name)
            arrays.append(model_input(pixels, spec.mean, spec.std, pixel_input))
            names.append(name)
    return np.stack(arrays), names


def reference_probabilities(model: ProbabilityModel, batch: np.ndarray) -> np.ndarray:
    """PyTorch's answer for the exported inputs. Pixels are normalised by ``preprocess.normalize``,
    as evaluation normalises them, so the parity check also covers the graph's own normalisation."""
    with torch.inference_mode():
        if model.pixel_input:
            floats = torch.from_numpy(np.stack([normalize(p, model.mean, model.std) for p in batch]))
            return torch.softmax(model.model(floats) / model.temperature, dim=1).numpy()
        return model(torch.from_numpy(batch)).numpy()


def check_parity(model: ProbabilityModel, onnx_path: Path, batch: np.ndarray, tolerance: float) -> dict:
    """Probabilities from PyTorch and ONNX Runtime on the same inputs. Batch sizes 1 and N both
    run, which also proves the batch dimension is really dynamic."""
    import onnxruntime as ort

    expected = reference_probabilities(model, batch)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    got = session.run([OUTPUT_NAME], {name: batch})[0]
    single = session.run([OUTPUT_NAME], {name: batch[:1]})[0]
    diff = float(max(np.abs(got - expected).max(), np.abs(single - expected[:1]).max()))
    result = {"max_abs_diff": diff, "tolerance": tolerance, "passed": diff <= tolerance,
              "argmax_agree": bool((got.argmax(1) == expected.argmax(1)).all())}
    if not result["passed"]:
        raise ArtstyleError(
            f"parity check failed: ONNX and PyTorch probabilities differ by {diff:.2e} "
            f"(tolerance {tolerance:.0e}); nothing was written"
        )
    return result


CROSSVAL_KEYS = ("n", "folds", "mean_accuracy", "group_mean_accuracy", "worst_group_accuracy", "worst_group",
                 "temperature", "ece", "ece_uncalibrated", "mode", "head", "image_size", "balance")


def read_crossval(path: str | os.PathLike) -> dict:
    """The card's summary of a ``crossval`` metrics.json (a file or its folder)."""
    path = Path(path)
    path = path / "metrics.json" if path.is_dir() else path
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ArtstyleError(f"{path}: not a readable crossval metrics.json ({exc})") from None
    if "group_mean_accuracy" not in metrics:
        raise ArtstyleError(f"{path}: not a crossval metrics.json (no group_mean_accuracy)")
    summary = {k: metrics[k] for k in CROSSVAL_KEYS if k in metrics}
    summary["groups"] = {g: {"n": r["n"], "accuracy": round(r["accuracy"], 4), "classes": r["classes"]}
                         for g, r in metrics.get("groups", {}).items()}
    return summary


def input_spec(image_size: int, pixel_input: bool) -> tuple[dict, str]:
    """The card's ``input`` entry and how the normalisation is done, for either kind of export."""
    if pixel_input:
        return ({"name": PIXELS_NAME, "shape": ["batch", image_size, image_size, 3], "dtype": "uint8", "layout": "NHWC"},
                "inside the model: (x / 255 - mean) / std")
    return ({"name": INPUT_NAME, "shape": ["batch", 3, image_size, image_size], "dtype": "float32", "layout": "NCHW"},
            "(x / 255 - mean) / std, before the model")


def model_card(spec, meta: dict, weights: Path, onnx_path: Path, opset: int, parity: dict,
               pixel_input: bool = True) -> dict:
    """Everything the predictor needs, plus where the model came from and how good it is."""
    config = meta.get("config") or {}
    training = {k: v for k, v in {
        "data": config.get("data"),
        "epoch": meta.get("epoch"),
        "data_summary": meta.get("data_summary"),
    }.items() if v not in (None, "")}
    model_input, normalization = input_spec(spec.image_size, pixel_input)
    return {
        "format": "artstyle-onnx",
        "artstyle_version": __version__,
        **spec.to_dict(),
        "input": model_input,
        "output": {"name": OUTPUT_NAME, "meaning": "softmax(logits / temperature), one column per class"},
        "preprocess": {
            "decode": "artstyle.images.open_image (EXIF upright, RGB, transparency on white)",
            "resize": "centred square of crop_pct x the short side, resized to image_size (OpenCV: "
                      "bilinear to enlarge, area averaging to shrink)",
            "normalize": normalization,
            "version": PREPROCESS_VERSION,
        },
        "metrics": meta.get("metrics") or {},  # validation, at the checkpoint's epoch
        "test_metrics": meta.get("test_metrics") or {},  # held-out test split, when training evaluated it
        "training": training,
        "source_checkpoint": str(weights),
        "onnx_sha256": sha256_file(onnx_path),
        "onnx_bytes": onnx_path.stat().st_size,
        "opset": opset,
        "torch_version": torch.__version__,
        "parity": parity,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
