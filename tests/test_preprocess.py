"""The model's view of an image (``artstyle.preprocess``): OpenCV's resize on a whole-pixel centre
crop, and the exact round trip between uint8 pixels and normalised floats."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from artstyle.preprocess import crop_box, crop_pixels, normalize, pixels_from_normalized, resize_and_crop

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def photo_like(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth colour gradients with a few hard edges: what the resize's accuracy is about."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([x / width * 255, y / height * 255, (x + y) / (width + height) * 255], axis=-1)
    for _ in range(5):
        cx, cy, r = rng.integers(0, width), rng.integers(0, height), rng.integers(5, 30)
        rgb[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.integers(0, 255, 3)
    return Image.fromarray(rgb.astype(np.uint8))


@pytest.mark.parametrize("size", [(139, 180), (180, 139), (100, 100)])
def test_enlarging_is_pillows_bilinear_to_within_rounding(size):
    """Small images (most of artstyle-v1) are enlarged: OpenCV's bilinear is the same filter
    on the same pixel grid as Pillow's, so the model sees what it was validated on."""
    img = photo_like(*size)
    left, top, side = crop_box(*img.size)
    pillow = np.asarray(img.resize((224, 224), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side)))
    ours = crop_pixels(img, 224)
    assert ours.shape == (224, 224, 3) and ours.dtype == np.uint8 and ours.flags["C_CONTIGUOUS"]
    diff = np.abs(ours.astype(int) - pillow.astype(int)).max(-1)
    # Inside, rounding only. On the crop's own edge Pillow blends in the pixel beyond the crop,
    # where OpenCV repeats the edge pixel: the outermost row or column may differ.
    assert diff[1:-1, 1:-1].max() <= 1 and diff.mean() < 0.5


def test_shrinking_averages_instead_of_aliasing():
    """A one-pixel checkerboard shrunk by a non-integer factor must come out flat grey (each
    output pixel averages the area it covers), not as a moire of sampled black and white."""
    board = ((np.indices((500, 500)).sum(0) % 2) * 255).astype(np.uint8)
    out = crop_pixels(Image.fromarray(np.stack([board] * 3, -1)), 224)
    assert abs(out.mean() - 127.5) < 2 and out.std() < 12
    import cv2

    sampled = cv2.resize(np.stack([board] * 3, -1), (224, 224), interpolation=cv2.INTER_LINEAR)
    assert sampled.std() > 4 * out.std()  # what plain bilinear sampling would have given


def test_the_crop_is_the_centred_square_of_the_short_side():
    wide = np.zeros((100, 300, 3), np.uint8)
    wide[:, 100:200] = 255  # the centre square is white, the sides black
    assert crop_pixels(wide, 100).min() == 255
    tall = np.zeros((301, 100, 3), np.uint8)
    tall[100:200] = 255
    assert crop_box(100, 301) == (0, 100, 100) and crop_pixels(tall, 50).min() == 255
    assert crop_box(300, 100, 0.5) == (125, 25, 50)


def test_an_absurd_aspect_ratio_is_cropped_before_it_is_resized():
    strip = np.full((1, 20000, 3), 7, np.uint8)
    assert (crop_pixels(strip, 224) == 7).all()
    assert resize_and_crop(Image.fromarray(strip), 64).size == (64, 64)


def test_pixels_and_normalised_floats_convert_exactly():
    pixels = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    floats = np.stack([normalize(p, MEAN, STD) for p in pixels])
    assert floats.shape == (4, 3, 32, 32) and floats.dtype == np.float32
    np.testing.assert_allclose(floats[0, 1, 0, 0], (pixels[0, 0, 0, 1] / 255 - MEAN[1]) / STD[1], rtol=1e-6)
    np.testing.assert_array_equal(pixels_from_normalized(floats, MEAN, STD), pixels)
