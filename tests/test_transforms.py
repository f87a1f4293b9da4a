"""The anti-shortcut augmentations do what they are for: JPEG re-compression changes pixels as a
JPEG encoder does, rescaling removes fine detail at the same size, borders add solid frames around
the untouched picture, each at its probability; and the strong recipe applies them."""

from __future__ import annotations

import io
import random
from pathlib import Path

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
    RandomStyle,
    create_train_transform,
    create_view_augmentation,
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


@pytest.mark.parametrize("augment", [RandomJPEG, RandomRescale, RandomBorder, RandomStyle])
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


REAL = Path(__file__).parents[1] / "examples" / "human_camera.jpg"  # a real photograph, smooth areas and edges


def test_style_crop_is_a_region_of_the_picture_at_0_4_to_0_8_of_each_side():
    img = noise_image(60, 40)
    random.seed(1)
    for _ in range(5):
        out = RandomStyle.crop(img)
        assert 24 <= out.width <= 48 and 16 <= out.height <= 32
        whole, part = pixels(img), pixels(out)
        found = [(x, y) for y in range(img.height - out.height + 1) for x in range(img.width - out.width + 1)
                 if np.array_equal(whole[y:y + out.height, x:x + out.width], part)]
        assert len(found) == 1


def test_style_blur_and_sharpen_move_the_detail_of_a_real_photo_each_its_way():
    img = Image.open(REAL).convert("RGB")
    random.seed(2)
    blurred, sharpened = RandomStyle.blur(img), RandomStyle.sharpen(img)
    assert blurred.size == sharpened.size == img.size
    assert detail(blurred) < 0.8 * detail(img) < detail(img) < detail(sharpened) / 1.1


def test_style_halftone_prints_grey_levels_as_black_and_white_dots():
    img = Image.open(REAL).convert("RGB")
    random.seed(3)
    for _ in range(3):
        out = pixels(RandomStyle.halftone(img))
        assert out.shape == pixels(img).shape
        assert set(np.unique(out)) <= {0.0, 255.0} and (out[..., 0] == out[..., 2]).all()
        # Dithering keeps the tone: the share of white dots follows the picture's brightness.
        assert abs(out.mean() - pixels(img.convert("L")).mean()) < 12


def test_style_noise_adds_zero_mean_noise_of_3_to_12_levels():
    img = Image.open(REAL).convert("RGB")
    random.seed(5)
    difference = pixels(RandomStyle.noise(img)) - pixels(img)
    inside = (pixels(img) > 40) & (pixels(img) < 215)  # where clipping at 0 and 255 cannot bias it
    assert 2.5 < difference[inside].std() < 12.5 and abs(difference[inside].mean()) < 0.5


def test_style_augmentation_is_off_by_default_and_keys_its_views_only_when_on():
    _, spec = create_model("efficientnet_lite0", ["a", "b"], image_size=48)
    default = create_view_augmentation(TrainConfig())
    # The key of views made before --style-aug-p existed: their cached features stay valid.
    assert default.key == "border0.2-rescale0.5-jpeg0.5-gray0.3"
    assert not any(isinstance(s, RandomStyle) for s in default.steps)
    assert not any(isinstance(s, RandomStyle) for s in create_train_transform(TrainConfig(), spec).steps)
    on = create_view_augmentation(TrainConfig(style_aug_p=0.5))
    assert on.key == default.key + "-style0.5" and isinstance(on.steps[0], RandomStyle) and on.steps[0].p == 0.5
    strong = create_train_transform(TrainConfig(style_aug_p=0.5), spec)
    assert isinstance(strong.steps[0], RandomStyle) and tuple(strong(noise_image()).shape) == (3, 48, 48)


@pytest.mark.parametrize("option", ["--style-aug-p", "--jpeg-p"])
def test_a_probability_outside_0_to_1_is_one_line(option, tmp_path, capsys):
    from artstyle.cli import main

    assert main(["train", str(tmp_path), "-o", str(tmp_path / "run"), option, "1.5"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"{option} 1.5: a probability, from 0 to 1") and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()
