"""Evaluation-time preprocessing shared by the PyTorch engine and the torch-free ONNX predictor.

One implementation on Pillow + numpy means an exported model sees exactly the pixels the
PyTorch model was validated on (the export parity check relies on it).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

RESAMPLE = Image.Resampling.BILINEAR


def resize_and_crop(img: Image.Image, size: int, crop_pct: float = 1.0) -> Image.Image:
    """The centred square covering ``crop_pct`` of the short side, resized to ``size`` x ``size``:
    what "resize the short side to size / crop_pct, then centre-crop size" gives, done in one
    resize of just the cropped box (a 1x20000 strip would otherwise be blown up whole first)."""
    w, h = img.size
    side = min(w, h) * crop_pct
    left, top = (w - side) / 2, (h - side) / 2
    # reducing_gap makes large downscales fast (a box reduce first) at no visible cost.
    return img.resize((size, size), RESAMPLE, box=(left, top, left + side, top + side), reducing_gap=3.0)


def normalize(img: Image.Image, mean, std) -> np.ndarray:
    """RGB PIL image -> float32 CHW array, (x/255 - mean) / std."""
    arr = np.asarray(img, dtype=np.float32) * (1.0 / 255.0)
    arr = (arr - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def preprocess(img: Image.Image, size: int, mean, std, crop_pct: float = 1.0) -> np.ndarray:
    return normalize(resize_and_crop(img, size, crop_pct), mean, std)
