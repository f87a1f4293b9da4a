"""Train and eval transforms.

Training uses timm's transform factory plus a few "anti-shortcut" PIL augmentations that
neither timm nor torchvision offer on PIL images: the artstyle-v1 classes differ in typical
resolution, compression and framing, and a model must not learn those instead of style.
Evaluation uses :mod:`artstyle.preprocess`, the same code the ONNX predictor runs.
"""

from __future__ import annotations

import io
import random

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps
from timm.data import create_transform

from ..config import TrainConfig
from ..models import ModelSpec
from ..preprocess import preprocess


class RandomJPEG:
    """Re-encode as JPEG at a random quality."""

    def __init__(self, p: float, quality=(30, 95)):
        self.p, self.quality = p, quality

    def __call__(self, img: Image.Image) -> Image.Image:
        if random.random() >= self.p:
            return img
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=random.randint(*self.quality))
        buf.seek(0)
        return Image.open(buf).convert("RGB")


class RandomRescale:
    """Downscale to a random fraction and back up: hides the source resolution."""

    def __init__(self, p: float, min_side: int = 32, max_factor: float = 0.9):
        self.p, self.min_side, self.max_factor = p, min_side, max_factor

    def __call__(self, img: Image.Image) -> Image.Image:
        if random.random() >= self.p:
            return img
        w, h = img.size
        low = min(1.0, self.min_side / max(1, min(w, h)))
        factor = random.uniform(low, max(low, self.max_factor))
        small = img.resize((max(1, round(w * factor)), max(1, round(h * factor))), Image.Resampling.BILINEAR)
        return small.resize((w, h), random.choice([Image.Resampling.BILINEAR, Image.Resampling.BICUBIC]))


class RandomBorder:
    """Pad with a random solid colour (letterboxing, frames, white or black backgrounds)."""

    def __init__(self, p: float, max_frac: float = 0.2):
        self.p, self.max_frac = p, max_frac

    def __call__(self, img: Image.Image) -> Image.Image:
        if random.random() >= self.p:
            return img
        w, h = img.size
        colour = random.choice([(255, 255, 255), (0, 0, 0), tuple(random.randint(0, 255) for _ in range(3))])
        pads = [random.randint(0, int(self.max_frac * s)) for s in (w, h, w, h)]
        return ImageOps.expand(img, border=tuple(pads), fill=colour)


class RandomGrayscale:
    """Drop the colour: black-and-white photos, manga and line art exist in every class."""

    def __init__(self, p: float):
        self.p = p

    def __call__(self, img: Image.Image) -> Image.Image:
        return img.convert("L").convert("RGB") if random.random() < self.p else img


class RandomStyle:
    """One change of how a picture is rendered that leaves what it is: a source's look (its scan,
    print, camera or framing) must not decide its class. With probability ``p``, one of:
      - crop: 40-80 % of each side (a panel of a page, a corner of a wallpaper or a crowd);
      - blur: Gaussian, radius 0.5-2 px (soft scans, film frames, focus);
      - sharpen: an unsharp mask (over-processed web images and TV captures);
      - halftone: grey levels as 1-bit dots (Floyd-Steinberg, at 1-3x the pixel size): newsprint
        and screentone, in every class;
      - noise: Gaussian, sigma 3-12 levels: sensor noise is not only a photo's."""

    KINDS = ("crop", "blur", "sharpen", "halftone", "noise")

    def __init__(self, p: float):
        self.p = p

    def __call__(self, img: Image.Image) -> Image.Image:
        if random.random() >= self.p:
            return img
        return getattr(self, random.choice(self.KINDS))(img)

    @staticmethod
    def crop(img: Image.Image) -> Image.Image:
        w, h = img.size
        cw, ch = (max(1, round(s * random.uniform(0.4, 0.8))) for s in (w, h))
        x, y = random.randint(0, w - cw), random.randint(0, h - ch)
        return img.crop((x, y, x + cw, y + ch))

    @staticmethod
    def blur(img: Image.Image) -> Image.Image:
        return img.filter(ImageFilter.GaussianBlur(random.uniform(0.5, 2.0)))

    @staticmethod
    def sharpen(img: Image.Image) -> Image.Image:
        return img.filter(ImageFilter.UnsharpMask(radius=2, percent=random.randint(100, 250), threshold=2))

    @staticmethod
    def halftone(img: Image.Image) -> Image.Image:
        w, h = img.size
        dot = random.choice((1, 2, 3))
        grey = img.convert("L").resize((max(1, w // dot), max(1, h // dot)), Image.Resampling.BILINEAR)
        return grey.convert("1").resize((w, h), Image.Resampling.NEAREST).convert("RGB")

    @staticmethod
    def noise(img: Image.Image) -> Image.Image:
        pixels = np.asarray(img.convert("RGB"), dtype=np.float32)
        noisy = pixels + np.random.default_rng(random.getrandbits(32)).normal(0, random.uniform(3, 12), pixels.shape)
        return Image.fromarray(np.clip(noisy, 0, 255).round().astype(np.uint8))


def anti_shortcut_steps(cfg: TrainConfig) -> list:
    """The PIL steps both the view augmentation and the strong recipe start with: the style change
    (when asked for), borders, rescaling, JPEG."""
    style = RandomStyle(cfg.style_aug_p) if cfg.style_aug_p else None
    return [style, RandomBorder(cfg.border_p), RandomRescale(cfg.rescale_p), RandomJPEG(cfg.jpeg_p)]


def create_view_augmentation(cfg: TrainConfig):
    """The anti-shortcut augmentations alone (no random-resized crops or colour jitter; a style
    crop only with --style-aug-p): what probe mode adds as extra views of each training image, so
    a frozen backbone's head cannot key on framing, resolution, compression or colour either.
    Its ``key`` names the settings, so that cached features of augmented views are never reused
    under other settings."""
    gray = max(cfg.grayscale_p, 0.3)
    augment = Compose(*anti_shortcut_steps(cfg), RandomGrayscale(gray))
    # Without --style-aug-p the key is the one it had before that option: caches stay valid.
    augment.key = f"border{cfg.border_p}-rescale{cfg.rescale_p}-jpeg{cfg.jpeg_p}-gray{gray}" + (
        f"-style{cfg.style_aug_p}" if cfg.style_aug_p else "")
    return augment


class Compose:
    def __init__(self, *steps):
        self.steps = [s for s in steps if s is not None]

    def __call__(self, img):
        for step in self.steps:
            img = step(img)
        return img


def create_train_transform(cfg: TrainConfig, spec: ModelSpec):
    if cfg.augment == "none":
        return create_eval_transform(spec)
    strong = cfg.augment == "strong"
    timm_tf = create_transform(
        input_size=spec.image_size,
        is_training=True,
        scale=(0.35 if strong else 0.6, 1.0),
        hflip=0.5,
        color_jitter=0.3 if strong else 0.1,
        grayscale_prob=cfg.grayscale_p if strong else 0.0,
        interpolation="random" if strong else "bilinear",
        mean=tuple(spec.mean),
        std=tuple(spec.std),
    )
    if not strong:
        return timm_tf
    return Compose(*anti_shortcut_steps(cfg), timm_tf)


def create_eval_transform(spec: ModelSpec):
    def transform(img: Image.Image) -> torch.Tensor:
        return torch.from_numpy(preprocess(img, spec.image_size, spec.mean, spec.std, spec.crop_pct))

    return transform
