"""Evaluation-time decoding and preprocessing: the one path from an image to the model's input,
shared by the torch-free predictor, the server, the engine's evaluation, the export parity check,
int8 calibration and Grad-CAM.

One implementation means an exported model sees exactly the pixels the PyTorch model was
validated on (the export parity check relies on it). Plain JPEGs are decoded by libjpeg-turbo
straight to an array (``images.open_pixels``), everything else by Pillow, to the same pixels. The
resize is OpenCV's, which takes a third to a half less CPU than Pillow's on artstyle-v1's mix of
sizes (bench/bench_preprocess.py): on small images Pillow's resize was the largest single cost
before the model.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from PIL import Image

from .errors import ImageLoadError
from .images import DEFAULT_MAX_PIXELS, Source, describe_source, open_pixels

# Names the pixels this module produces: cached features (engine.probe.feature_key) are reused only
# for the same version. v2: OpenCV resize on a whole-pixel crop box (v1 was Pillow's bilinear).
PREPROCESS_VERSION = 2

# OpenCV's thread pool is left as the user set it (artstyle does not change other libraries'
# process-wide settings): cv2.resize splits its output into stripes of 2**16 pixels, so a
# 224 x 224 view is resized on the calling decode thread alone.


def crop_box(width: int, height: int, crop_pct: float = 1.0) -> tuple[int, int, int]:
    """(left, top, side) of the centred square covering ``crop_pct`` of the short side, in whole
    pixels. A ``crop_pct`` above 1 takes the whole short side (there is nothing beyond it)."""
    side = max(1, min(min(width, height), round(min(width, height) * crop_pct)))
    return (width - side) // 2, (height - side) // 2, side


def crop_pixels(img: Image.Image | np.ndarray, size: int, crop_pct: float = 1.0) -> np.ndarray:
    """RGB image -> the model's ``size`` x ``size`` view as uint8 HWC: the centred square of
    ``crop_pct`` x the short side, resized. Enlarging is bilinear; shrinking averages the pixels
    each output pixel covers (OpenCV's INTER_AREA), so a large image is not aliased."""
    if isinstance(img, Image.Image):
        left, top, side = crop_box(*img.size, crop_pct)
        # Crop first: converting the whole decoded image to an array would copy all of it.
        square = np.asarray(img.crop((left, top, left + side, top + side)))
    else:
        height, width = img.shape[:2]
        left, top, side = crop_box(width, height, crop_pct)
        square = img[top:top + side, left:left + side]
    if side == size:
        return np.ascontiguousarray(square)
    interpolation = cv2.INTER_LINEAR if side < size else cv2.INTER_AREA
    return cv2.resize(square, (size, size), interpolation=interpolation)


def resize_and_crop(img: Image.Image, size: int, crop_pct: float = 1.0) -> Image.Image:
    """``crop_pixels`` as a PIL image, for what displays the model's view (Grad-CAM)."""
    return Image.fromarray(crop_pixels(img, size, crop_pct))


def normalize(pixels: Image.Image | np.ndarray, mean, std) -> np.ndarray:
    """uint8 HWC RGB (array or PIL image) -> float32 CHW array, (x/255 - mean) / std: the input
    of a model that does not normalise for itself (PyTorch, and ONNX exports with float input).

    Written as one uint8->float32 copy into CHW order and two in-place ops (x * scale + bias):
    about 9x faster than the textbook expression."""
    std = np.asarray(std, dtype=np.float32)
    scale = (1.0 / (255.0 * std)).reshape(3, 1, 1)
    bias = (-np.asarray(mean, dtype=np.float32) / std).reshape(3, 1, 1)
    out = np.asarray(pixels, dtype=np.uint8).transpose(2, 0, 1).astype(np.float32, order="C")
    out *= scale
    out += bias
    return out


def model_input(pixels: np.ndarray, mean, std, pixel_input: bool) -> np.ndarray:
    """``crop_pixels``' uint8 HWC -> what a model takes for one image: the pixels themselves for an
    export that normalises inside the graph, else ``normalize``'s float32 CHW."""
    return pixels if pixel_input else normalize(pixels, mean, std)


def pixels_from_normalized(batch: np.ndarray, mean, std) -> np.ndarray:
    """``normalize``'s inverse for a float32 NCHW batch -> uint8 NHWC, exact (the rounding error
    of float32 is far below half a level): for code that holds PyTorch's input and feeds a model
    that normalises itself."""
    mean = np.asarray(mean, dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(std, dtype=np.float32).reshape(1, 3, 1, 1)
    pixels = np.rint((batch * std + mean) * 255.0).clip(0, 255).astype(np.uint8)
    return np.ascontiguousarray(pixels.transpose(0, 2, 3, 1))


def preprocess(img: Image.Image, size: int, mean, std, crop_pct: float = 1.0) -> np.ndarray:
    return normalize(crop_pixels(img, size, crop_pct), mean, std)


def decode_size(image_size: int, crop_pct: float = 1.0) -> int:
    """The size an image must be decoded at for preprocessing: the short side is resized to
    image_size / crop_pct, so JPEGs may be decoded (libjpeg's draft mode) down to that, no further."""
    return int(math.ceil(image_size / crop_pct))


def to_crop(img: Image.Image | np.ndarray, image_size: int, crop_pct: float = 1.0, *, name: str) -> np.ndarray:
    """``crop_pixels`` (uint8 HWC), with an image it cannot handle raised as ``ImageLoadError``
    naming the input: one input must not end a run of thousands."""
    try:
        return crop_pixels(img, image_size, crop_pct)
    except (MemoryError, ValueError, cv2.error) as exc:
        raise ImageLoadError(name, f"cannot preprocess ({type(exc).__name__}: {exc})") from None


def to_array(img: Image.Image, image_size: int, mean, std, crop_pct: float = 1.0, *, name: str) -> np.ndarray:
    """``preprocess`` with ``to_crop``'s errors: the model's float32 CHW input."""
    return normalize(to_crop(img, image_size, crop_pct, name=name), mean, std)


def load_array(source: Source, image_size: int, mean, std, crop_pct: float = 1.0, *, name: str | None = None,
               max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A path, bytes or binary file -> the model's float32 CHW input. Raises ``ImageLoadError``."""
    return normalize(load_pixels(source, image_size, crop_pct, name=name, max_pixels=max_pixels), mean, std)


def load_pixels(source: Source, image_size: int, crop_pct: float = 1.0, *, name: str | None = None,
                max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A path, bytes or binary file -> the model's view as uint8 HWC (the input of an export
    that normalises inside the model). Raises ``ImageLoadError``."""
    img = open_pixels(source, name=name, max_pixels=max_pixels, draft_size=decode_size(image_size, crop_pct))
    return to_crop(img, image_size, crop_pct, name=describe_source(source, name))
