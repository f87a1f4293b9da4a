"""Grad-CAM for artstyle's models: heatmaps of what the predicted class rests on, drawn over the
model's view of each image, for ``artstyle predict --explain`` (``commands.explain``) and the
server's ``?explain=true``. Gradients need the PyTorch model, so it runs from a checkpoint (a
run directory, a ``.safetensors`` file, or the ``.safetensors`` that ``export --with-weights``
puts beside an ONNX model and its card)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .._files import check_sha256
from ..errors import ArtstyleError, ImageLoadError
from ..infer.predictor import DEFAULT_MODEL, Prediction, fp32_path, load_any, make_prediction
from ..preprocess import decode_size, resize_and_crop, to_array

DISPLAY_SIZE = 256  # heatmaps are drawn at least this large, whatever the model's input size
GRID_BATCH = 32
HEAT_ALPHA = 0.45


def resolve_explain_weights(model) -> Path:
    """The checkpoint to explain with; an exported model needs its weights beside it."""
    from .checkpoint import resolve_weights

    if model is None and not DEFAULT_MODEL.is_file():
        raise ArtstyleError("no default model is installed; pass --model")
    path = DEFAULT_MODEL if model is None else Path(model)
    if path.suffix in (".onnx", ".json"):
        # An int8 model is explained with the weights of the fp32 model it was made from (its
        # trunk; the fp32 head), so on the rare image where the two disagree the label is fp32's.
        weights = fp32_path(path.with_suffix(".onnx")).with_suffix(".safetensors")
        if not weights.is_file():
            which = "the installed default model ships no PyTorch weights" if model is None else (
                f"{path.name} has no {weights.name} beside it (export with --with-weights)")
            raise ArtstyleError(f"--explain needs the PyTorch weights: {which}; pass --model RUN_OR_CHECKPOINT")
        verify_weights(weights)
        return weights
    return resolve_weights(path)


def verify_weights(weights: Path) -> None:
    """An exported bundle's card records the weights' sha256: refuse a damaged copy."""
    import json

    card_path = weights.with_suffix(".json")
    expected = json.loads(card_path.read_text(encoding="utf-8")).get("weights_sha256") if card_path.is_file() else None
    if expected:
        check_sha256(weights, expected, weights)


def last_feature_maps(model: torch.nn.Module, batch: torch.Tensor):
    """([last feature map of each backbone], logits), the maps part of the autograd graph.
    timm's forward_features / forward_head split gives the map directly; the style head reads
    the backbone at every level, so its last map is caught on the way with a hook (Grad-CAM then
    explains the part of the score that flows through that map, as it does for any CNN). Two
    backbones on one picture have maps of the same size: together they are one map whose
    channels are both backbones'."""
    from ..models.combined import CombinedBackbone
    from ..models.style import StyleClassifier

    if not isinstance(model, StyleClassifier):
        features = model.forward_features(batch)
        return [features], (model.forward_head(features) if features.ndim == 4 else None)
    backbone = model.backbone
    parts = backbone.parts if isinstance(backbone, CombinedBackbone) else [backbone]
    caught = [[] for _ in parts]
    handles = [part.bn2.register_forward_hook(lambda _m, _i, out, store=store: store.append(out))
               for part, store in zip(parts, caught)]
    try:
        logits = model(batch)
    finally:
        for handle in handles:
            handle.remove()
    return [store[0] for store in caught], logits


def grad_cam(model: torch.nn.Module, batch: torch.Tensor, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities N x classes at ``temperature``, heatmaps N x h x w in [0, 1]) for the
    predicted classes.

    Grad-CAM on the last feature map: each channel weighted by the mean gradient of the class
    score, summed, ReLU."""
    with torch.enable_grad():
        maps, logits = last_feature_maps(model, batch)
        if maps[0].ndim != 4:
            raise ArtstyleError("--explain needs a convolutional backbone (its features are not a 2-D map)")
        chosen = logits.argmax(1, keepdim=True)
        grads = torch.autograd.grad(logits.gather(1, chosen).sum(), maps)
    weighted = sum((grad.mean((2, 3), keepdim=True) * fmap).sum(1) for grad, fmap in zip(grads, maps))
    cam = torch.relu(weighted).detach()
    peak = cam.flatten(1).max(1).values.clamp_min(1e-12)[:, None, None]
    return torch.softmax(logits.detach() / temperature, 1).numpy(), (cam / peak).numpy()


def overlay(img: Image.Image, heat: np.ndarray, caption: str, crop_pct: float) -> Image.Image:
    """The model's view of the image (same crop) with the heatmap blended on and the caption."""
    from matplotlib import colormaps

    view = resize_and_crop(img, DISPLAY_SIZE, crop_pct)
    heat_img = Image.fromarray(np.uint8(heat * 255)).resize(view.size, Image.Resampling.BICUBIC)
    coloured = Image.fromarray(np.uint8(colormaps["jet"](np.asarray(heat_img) / 255.0)[..., :3] * 255))
    out = Image.blend(view, coloured, HEAT_ALPHA)
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default(size=max(14, DISPLAY_SIZE // 14))
    box = draw.textbbox((6, 4), caption, font=font)
    draw.rectangle((box[0] - 4, box[1] - 3, box[2] + 4, box[3] + 3), fill=(0, 0, 0))
    draw.text((6, 4), caption, fill=(255, 255, 255), font=font)
    return out


def save_grid(images: list[tuple[str, Image.Image]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(8, len(images))
    rows = -(-len(images) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, img) in zip(axes.flat, images):
        ax.imshow(img)
        title = Path(name.split("?")[0]).name
        ax.set_title(title if len(title) <= 28 else title[:12] + "..." + title[-13:], fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def file_stem(source: str) -> str:
    stem = Path(source.split("?")[0].rstrip("/")).stem or "image"
    return re.sub(r"[^\w.-]+", "_", stem)[:60]


def load_explainer(model_path):
    """(PyTorch model in eval mode, ModelSpec) for Grad-CAM."""
    from .checkpoint import load_model

    model, spec, _ = load_model(resolve_explain_weights(model_path))
    return model, spec


def card_temperature(model_path) -> float:
    """The temperature the exported model applies, so explained predictions match plain ones."""
    from ..infer.predictor import read_card, resolve_model

    return float(read_card(resolve_model(model_path)).get("temperature", 1.0))


def explain(model, spec, inputs: list, out_dir: Path, *, url_timeout: float = 10.0, max_download: int = 20 << 20,
            temperature: float = 1.0, allow_private_urls: bool = False):
    """Yield a ``Prediction`` per input, in order, while writing ``NNNNN_name.png`` heatmaps and
    a ``grid_NNN.png`` per batch of 32 into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    draft = decode_size(spec.image_size, spec.crop_pct)
    for start in range(0, len(inputs), GRID_BATCH):
        loaded, failed = [], {}
        for index, source in enumerate(inputs[start:start + GRID_BATCH], start):
            try:
                img = load_any(source, draft_size=draft, url_timeout=url_timeout, max_download=max_download,
                               allow_private_urls=allow_private_urls)
                array = to_array(img, spec.image_size, spec.mean, spec.std, spec.crop_pct, name=str(source))
                loaded.append((index, str(source), img, array))
            except ImageLoadError as exc:
                failed[index] = Prediction(str(source), error=exc.reason)
        results = explain_batch(model, spec, loaded, out_dir, start // GRID_BATCH, temperature) if loaded else {}
        for index in range(start, min(start + GRID_BATCH, len(inputs))):
            yield results.get(index) or failed[index]


def explain_batch(model, spec, loaded: list, out_dir: Path, grid_number: int,
                  temperature: float = 1.0) -> dict[int, Prediction]:
    batch = torch.from_numpy(np.stack([array for _, _, _, array in loaded]))
    probs, heats = grad_cam(model, batch, temperature)
    results, tiles = {}, []
    for (index, name, img, _), p, heat in zip(loaded, probs, heats):
        pred = make_prediction(name, p, spec.classes)
        picture = overlay(img, heat, f"{pred.label} {pred.confidence:.0%}", spec.crop_pct)
        picture.save(out_dir / f"{index:05d}_{file_stem(name)}.png")
        tiles.append((name, picture))
        results[index] = pred
    save_grid(tiles, out_dir / f"grid_{grid_number:03d}.png")
    return results
