"""The anti-shortcut augmentations do what they are for: JPEG re-compression changes pixels as a
JPEG encoder does, rescaling removes fine detail at the same size, borders add solid frames around
the untouched picture, each at its probability; and the strong recipe applies them."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
from PIL import Image, ImageChops

pytest.importorskip("torch", reason="needs the train extra: pip install 'artstyle[train]'")
pytest.importorskip("timm", reason="needs the train extra: pip install 'artstyle[train]'")
from artstyle.config import TrainConfig  # noqa: E402
from artstyle.engine.transforms import (  # noqa: E402
    Compose,
    RandomBorder,
    RandomJPEG,
    RandomRescale,
    create_train_transform,
)
from artstyle.models import create_model  # noqa: E402


def noise_image(w: int = 96, h: int = 64, seed: int = 0) -> Image.Image:
    """Pixel-level detail everywhere: what compression and rescaling destroy first."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.float64)


def detail(img: Image.Image) -> float:
    """Mean absolute difference between horizontal neighbours: high for sharp detail."""
    return float(np.abs(np.diff(pixels(img), axis=1)).mean())


def test_random_jpeg_re_encodes_at_a_quality_in_its_range():
    img = noise_image()
    random.seed(1)
    out = RandomJPEG(p=1.0, quality=(30, 30))(img)
    reference = io.BytesIO()
    img.save(reference, "JPEG", quality=30)
    assert out.size == img.size and out.mode == "RGB"
    assert np.array_equal(pixels(out), pixels(Image.open(reference).convert("RGB")))  # exactly a q30 JPEG
    assert np.abs(pixels(out) - pixels(img)).mean() > 10  # and that is far from the original noise
    assert RandomJPEG(p=0.0)(img) is img


def test_random_rescale_keeps_the_size_and_removes_fine_detail():
    img = noise_image(128, 128)
    random.seed(2)
    out = RandomRescale(p=1.0)(img)
    assert out.size == img.size
    assert detail(out) < 0.7 * detail(img)  # at most 0.9x resolution, then back up: detail is gone
    # Never below min_side on the short side, however small the factor asked: here exactly half.
    out = RandomRescale(p=1.0, min_side=64, max_factor=0.01)(img)
    half = img.resize((64, 64), Image.Resampling.BILINEAR)
    candidates = [half.resize(img.size, m) for m in (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC)]
    assert any(np.array_equal(pixels(out), pixels(c)) for c in candidates)


def test_random_border_frames_the_untouched_picture_in_a_solid_colour():
    img = noise_image(80, 60)
    random.seed(3)
    framed = 0
    for _ in range(20):
        out = RandomBorder(p=1.0, max_frac=0.2)(img)
        extra_w, extra_h = out.width - img.width, out.height - img.height
        assert 0 <= extra_w <= 2 * int(0.2 * 80) and 0 <= extra_h <= 2 * int(0.2 * 60)
        if (extra_w, extra_h) == (0, 0):
            continue
        framed += 1
        colour = out.getpixel((0, 0)) if out.getpixel((0, 0)) != img.getpixel((0, 0)) else out.getpixel((out.width - 1, out.height - 1))
        # Everything that differs from the frame colour is the picture, pasted unchanged.
        box = ImageChops.difference(out, Image.new("RGB", out.size, colour)).getbbox()
        assert out.crop(box).size == img.size and np.array_equal(pixels(out.crop(box)), pixels(img))
    assert framed >= 15


@pytest.mark.parametrize("augment", [RandomJPEG, RandomRescale, RandomBorder])
def test_each_applies_at_its_probability(augment):
    img = noise_image(48, 48)
    random.seed(4)
    step = augment(p=0.3)
    applied = sum(step(img) is not img for _ in range(400))
    assert 80 <= applied <= 160  # 0.3 of 400 = 120 (binomial sd 9)


def test_the_strong_recipe_applies_them_with_the_configured_probabilities():
    _, spec = create_model("efficientnet_lite0", ["a", "b"], image_size=48)
    cfg = TrainConfig(jpeg_p=0.25, rescale_p=0.5, border_p=0.75)
    transform = create_train_transform(cfg, spec)
    assert isinstance(transform, Compose)
    kinds = {type(s): s.p for s in transform.steps if isinstance(s, (RandomJPEG, RandomRescale, RandomBorder))}
    assert kinds == {RandomJPEG: 0.25, RandomRescale: 0.5, RandomBorder: 0.75}
    assert tuple(transform(noise_image()).shape) == (3, 48, 48)
    basic = create_train_transform(TrainConfig(augment="basic"), spec)
    assert not isinstance(basic, Compose)  # only "strong" adds the anti-shortcut steps


def test_evaluation_decodes_and_preprocesses_as_the_predictor_does_with_crop_below_one(tmp_path):
    """The engine's evaluation input is the torch-free predictor's, pixel for pixel, also when
    crop_pct < 1: both decode JPEGs at ceil(size / crop_pct) (the engine used to decode at
    ``size``, a coarser libjpeg reduction for this image)."""
    import pandas as pd

    from artstyle.engine.data import ImageDataset, image_dataset
    from artstyle.engine.transforms import create_eval_transform
    from artstyle.models import ModelSpec
    from artstyle.preprocess import load_array

    path = tmp_path / "big.jpg"
    noise_image(1600, 1400).save(path, quality=90)
    spec = ModelSpec(backbone="lite0", arch="tf_efficientnet_lite0", classes=["a", "b"], image_size=150, crop_pct=0.75)
    frame = pd.DataFrame({"path": [str(path)], "label": ["a"]})

    engine = image_dataset(frame, spec, create_eval_transform(spec))[0][0].numpy()
    predictor = load_array(path, spec.image_size, spec.mean, spec.std, spec.crop_pct)
    np.testing.assert_array_equal(engine, predictor)
    # The image does tell the two decode sizes apart, so the equality above is not a given.
    coarse = ImageDataset(frame, spec.classes, create_eval_transform(spec), spec.image_size)[0][0].numpy()
    assert np.abs(coarse - predictor).max() > 0.05
