"""Evaluation-time preprocessing shared by the PyTorch engine and the torch-free ONNX predictor.

One implementation on Pillow + numpy means an exported model sees exactly the pixels the
PyTorch model was validated on (the export parity check relies on it).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

RESAMPLE = Image.Resampling.BILINEAR


def resize_and_crop(img: Image.Image, size: int, crop_pct: float = 1.0) -> Image.Image:
    """Resize the short side to ``size / crop_pct`` then centre-crop ``size`` x ``size``."""
    scale_to = max(size, int(round(size / crop_pct)))
    w, h = img.size
    if w <= h:
        new_w, new_h = scale_to, max(scale_to, int(round(h * scale_to / w)))
    else:
        new_w, new_h = max(scale_to, int(round(w * scale_to / h))), scale_to
    # reducing_gap makes large downscales fast (a box reduce first) at no visible cost.
    img = img.resize((new_w, new_h), RESAMPLE, reducing_gap=3.0)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return img.crop((left, top, left + size, top + size))


def normalize(img: Image.Image, mean, std) -> np.ndarray:
    """RGB PIL image -> float32 CHW array, (x/255 - mean) / std."""
    arr = np.asarray(img, dtype=np.float32) * (1.0 / 255.0)
    arr = (arr - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def preprocess(img: Image.Image, size: int, mean, std, crop_pct: float = 1.0) -> np.ndarray:
    return normalize(resize_and_crop(img, size, crop_pct), mean, std)
