"""The one robust image loader that every part of artstyle uses (scan, training, predict, serve).

It never imports torch, so the torch-free predictor can use it.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import re
import stat
import warnings
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
import simplejpeg
from PIL import Image, ImageOps, UnidentifiedImageError, features

from .errors import ImageLoadError

# ~90 megapixels: above any real photo or illustration, far below what would exhaust memory.
DEFAULT_MAX_PIXELS = 90_000_000
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".jfif", ".pjpeg", ".pjp"}
)

# Pillow's process-wide settings are left as they are: importing artstyle must not turn off the
# decompression-bomb guard (Image.MAX_IMAGE_PIXELS) or the truncation check
# (ImageFile.LOAD_TRUNCATED_IMAGES, False by default: a truncated file fails loudly rather than
# decoding to a half-grey image) for every other library in the process. artstyle's own,
# configurable limit (check_pixels) applies on top; only the artstyle command itself, a process of
# its own, lifts Pillow's limit so that --max-pixels decides (artstyle.cli).
PILLOW_BOMB = re.compile(r"\((\d+) pixels\)")

Source = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO]
BYTES_TYPES = (bytes, bytearray, memoryview)

JPEG_SIGNATURE = b"\xff\xd8\xff"
# A JPEG holding any of these goes through Pillow: EXIF, or XMP's tiff:Orientation (which Pillow
# reads when there is no EXIF), may turn it upright; an MPO (a camera's multi-picture file, with
# an MPF segment) is a format Pillow does not draft. A false match inside the compressed data
# only sends the file through Pillow.
NEEDS_PILLOW = (b"Exif\x00\x00", b"tiff:Orientation", b"MPF\x00")
# Larger files go through Pillow, which refuses a decompression bomb from its header before
# reading the rest of the file.
MAX_FAST_JPEG_BYTES = 64 * 1024 * 1024
# JPEG colour spaces that libjpeg-turbo turns into the RGB Pillow makes of them (CMYK, YCCK and
# Adobe RGB go through Pillow).
PLAIN_JPEG_COLORSPACES = frozenset({"YCbCr", "Gray"})


def is_image_file(path: Union[str, os.PathLike]) -> bool:
    """True for a visible file whose extension is an image format artstyle reads."""
    name = os.path.basename(path)
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def describe_source(source: Source, name: str | None = None) -> str:
    """How error messages name an input: its name, else its path, else what it is."""
    if name:
        return name
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return "<bytes>" if isinstance(source, BYTES_TYPES) else getattr(source, "name", "<stream>")


def _open_raw(source: Source, label: str) -> Image.Image:
    """Open without decoding pixels, mapping every OS and format failure to ImageLoadError."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            # stat() follows links, so a broken link or a symlink loop fails here with its own reason.
            size = path.stat().st_size
        except OSError as exc:
            raise ImageLoadError(label, exc.strerror or type(exc).__name__) from None
        if path.is_dir():
            raise ImageLoadError(label, "is a directory, not an image")
        if size == 0:
            raise ImageLoadError(label, "empty file (0 bytes)")
    elif isinstance(source, BYTES_TYPES):
        if not len(source):
            raise ImageLoadError(label, "empty file (0 bytes)")
        source = io.BytesIO(source)
    elif not hasattr(source, "read"):
        raise ImageLoadError(label, f"not an image input ({type(source).__name__}): pass a path, bytes or a binary file")
    try:
        return Image.open(source)
    except UnidentifiedImageError:
        raise ImageLoadError(label, "not an image (unrecognised format)") from None
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(label, pillow_refusal(exc)) from None
    except OSError as exc:
        raise ImageLoadError(label, exc.strerror or str(exc) or type(exc).__name__) from None


def pillow_refusal(exc: Exception) -> str:
    """Pillow's own bomb guard said no (its limit is below the one artstyle was given)."""
    found = PILLOW_BOMB.search(str(exc))
    size = f"{int(found.group(1)) / 1e6:.3g} megapixels" if found else "over Pillow's limit"
    limit = 2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6
    return f"too large: {size} (limit {limit:.3g}, Pillow's PIL.Image.MAX_IMAGE_PIXELS)"


def check_pixels(img: Image.Image, label: str, max_pixels: int | None) -> None:
    """Refuse decompression bombs from the header alone, before any pixel memory is allocated."""
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ImageLoadError(label, f"invalid size {w}x{h}")
    if max_pixels and w * h > max_pixels:
        raise ImageLoadError(
            label, f"too large: {w}x{h} = {w * h / 1e6:.0f} megapixels (limit {max_pixels / 1e6:.0f})"
        )


def to_rgb(img: Image.Image) -> Image.Image:
    """Any mode to RGB: transparency is flattened onto white (drawings on transparent canvases
    are meant to be seen on white), 16-bit is scaled down rather than clipped, CMYK converted."""
    if img.mode == "RGB" and "transparency" not in img.info:
        return img
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit (or 32-bit int) grayscale: rescale to 8 bits instead of Pillow's clipping.
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype("uint8"), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode in ("RGB", "L") and "transparency" in img.info):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return img.convert("RGB")


def open_image(
    source: Source,
    *,
    name: str | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    draft_size: int | None = None,
) -> Image.Image:
    """Load ``source`` (path, bytes or binary file) as an upright RGB ``PIL.Image``.

    - EXIF orientation applied; first frame of animations; transparency flattened onto white;
      palette, grayscale, CMYK, 16-bit and WebP handled.
    - Images above ``max_pixels`` are refused from their header (decompression bombs).
    - ``draft_size``: when set, JPEGs are decoded by libjpeg at the smallest power-of-two
      reduction that keeps both sides >= draft_size. Decoding is most of a CPU's time per image
      and a 2-4x smaller decode is up to 10x faster.

    Raises ``ImageLoadError(path, reason)`` for anything that cannot be read.
    """
    label = describe_source(source, name)
    img = _open_raw(source, label)
    try:
        return _decode(img, label, max_pixels, draft_size)
    except BaseException:
        img.close()  # release the file now, not whenever the garbage collector gets to it
        raise


def _decode(img: Image.Image, label: str, max_pixels: int | None, draft_size: int | None) -> Image.Image:
    try:
        check_pixels(img, label, max_pixels)
        if draft_size and img.format == "JPEG":
            img.draft("RGB", (draft_size, draft_size))
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's palette-transparency notices are not news
            img.load()
            # In place: without an orientation to apply, exif_transpose would return a full copy.
            ImageOps.exif_transpose(img, in_place=True)
            return to_rgb(img)
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(label, pillow_refusal(exc)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = str(exc) or type(exc).__name__
        if "truncated" in reason.lower() or isinstance(exc, EOFError):
            reason = f"truncated or corrupt ({reason})"
        raise ImageLoadError(label, reason) from None
    except MemoryError:
        raise ImageLoadError(label, "out of memory while decoding") from None


def open_pixels(
    source: Source,
    *,
    name: str | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    draft_size: int | None = None,
) -> np.ndarray | Image.Image:
    """``open_image`` for code that goes on to crop and resize the pixels
    (``preprocess.crop_pixels`` takes either result).

    The common case, a plain JPEG (YCbCr or grey, no EXIF or XMP, not a multi-picture file), is
    decoded by libjpeg-turbo (simplejpeg) straight to a uint8 HWC RGB array, at the draft
    reduction Pillow would use. The pixels are Pillow's, bit for bit (tests/test_images.py;
    ``fast_jpeg_matches_pillow`` checks that this Pillow's libjpeg is libjpeg-turbo too). It
    skips Pillow's header parsing, which is written in Python, and the copy out of a PIL image:
    about 30 % less CPU than ``open_image`` (bench/bench_preprocess.py). Anything else, and any
    file this path cannot read, goes through ``open_image``, which says why it cannot.

    Raises ``ImageLoadError(path, reason)`` for anything that cannot be read.
    """
    data = read_if_jpeg(source)
    if data is None:
        return open_image(source, name=name, max_pixels=max_pixels, draft_size=draft_size)
    if fast_jpeg_matches_pillow():
        pixels = decode_plain_jpeg(data, max_pixels, draft_size)
        if pixels is not None:
            return pixels
    # Pillow reads the bytes already in memory, and names the input as it would have.
    return open_image(data, name=describe_source(source, name), max_pixels=max_pixels, draft_size=draft_size)


def read_if_jpeg(source: Source) -> bytes | None:
    """The whole file when ``source`` (a path or bytes) is a JPEG of a sane size, else None: no
    other input, and nothing that fails to read here (``open_image`` reports those), takes the
    fast path."""
    if isinstance(source, BYTES_TYPES):
        if len(source) > MAX_FAST_JPEG_BYTES or bytes(source[:3]) != JPEG_SIGNATURE:
            return None
        return bytes(source)
    if not isinstance(source, (str, os.PathLike)):
        return None
    try:
        # A regular file only: a FIFO or a device would block or never end.
        info = os.stat(source)
        if not stat.S_ISREG(info.st_mode) or not 0 < info.st_size <= MAX_FAST_JPEG_BYTES:
            return None
        with open(source, "rb") as f:
            if f.read(3) != JPEG_SIGNATURE:
                return None
            f.seek(0)
            return f.read()
    except OSError:
        return None


def plain_jpeg_size(data: bytes, max_pixels: int | None) -> tuple[int, int] | None:
    """(width, height), from its header, of a JPEG that is shown as it is stored and that the
    fast path may decode: YCbCr or grey, no EXIF, XMP or MPF, within artstyle's and Pillow's
    pixel limits. None for anything else."""
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    if colorspace not in PLAIN_JPEG_COLORSPACES or width <= 0 or height <= 0:
        return None
    # Above artstyle's limit or Pillow's own guard, Pillow refuses (or warns) as it always has.
    if any(limit and width * height > limit for limit in (max_pixels, Image.MAX_IMAGE_PIXELS)):
        return None
    if any(marker in data for marker in NEEDS_PILLOW):
        return None
    return width, height


def decode_plain_jpeg(data: bytes, max_pixels: int | None, draft_size: int | None) -> np.ndarray | None:
    """A plain JPEG (``plain_jpeg_size``) decoded to uint8 HWC RGB, or None when Pillow must
    handle it, corrupt or truncated files included. It never raises, so that ``open_image``
    gives the reason, in its own words."""
    size = plain_jpeg_size(data, max_pixels)
    if size is None:
        return None
    width, height = size
    scale = draft_scale(width, height, draft_size)
    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB", min_factor=scale,
                                      min_width=-(-width // scale), min_height=-(-height // scale))
    except (ValueError, MemoryError):  # strict: libjpeg's warnings (a truncated file) are errors too
        return None


@functools.cache
def fast_jpeg_matches_pillow() -> bool:
    """Whether this process's Pillow decodes JPEGs with libjpeg-turbo, as simplejpeg does, so the
    two give the same pixels (tests/test_images.py checks them bit for bit). Pillow's wheels
    carry libjpeg-turbo; a Pillow built on IJG's libjpeg (9 upsamples chroma differently) would
    give other pixels, and the fast path then stays off, with one warning."""
    if features.check_feature("libjpeg_turbo"):
        return True
    logging.getLogger("artstyle").warning(
        "this Pillow is not built on libjpeg-turbo, so simplejpeg would decode JPEGs to other pixels: "
        "every image is decoded by Pillow, which is slower")
    return False


def draft_scale(width: int, height: int, draft_size: int | None) -> int:
    """The reduction Pillow's JPEG ``draft`` picks: the largest of 8, 4, 2, 1 that keeps both
    sides at least ``draft_size``."""
    if not draft_size:
        return 1
    fits = min(width // draft_size, height // draft_size)
    return next(scale for scale in (8, 4, 2, 1) if fits >= scale or scale == 1)


def read_header(source: Source, *, name: str | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS):
    """Cheap metadata without decoding: (width, height, format, mode). Raises ImageLoadError."""
    label = describe_source(source, name)
    img = _open_raw(source, label)
    try:
        check_pixels(img, label, max_pixels)
        return img.size[0], img.size[1], img.format or "", img.mode
    finally:
        img.close()


# A symbolic link stored as a small text file holding the target's relative path: what git
# checks out with core.symlinks=false (Windows, some CI) and what a copy without link support
# leaves behind. Datasets assembled from links (artstyle-v2 reuses v1 this way) arrive like that.
LINK_STUB_MAX_BYTES = 1024


def resolve_link_stub(path: Union[str, os.PathLike]) -> str:
    """The file a link stub points to, or ``path`` itself when it is not a stub."""
    path = str(path)
    try:
        if os.path.getsize(path) > LINK_STUB_MAX_BYTES:
            return path
        with open(path, "rb") as f:
            text = f.read().decode("utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return path
    if not text or "\n" in text or not is_image_file(text):
        return path
    target = os.path.normpath(os.path.join(os.path.dirname(path), text))
    return target if os.path.isfile(target) else path


def walk_images(folder: Union[str, os.PathLike], notes: list[str] | None = None,
                accept=is_image_file) -> list[str]:
    """Image files (the files ``accept`` takes) under ``folder`` at any depth, hidden files and
    folders skipped: the one folder walker of the scan, predict and export.

    Folder symlinks are followed (datasets are often assembled from links) but each real folder
    is visited once, so a link pointing back up the tree cannot loop forever. File symlinks are
    kept even when broken or looping: readers then report them with the reason. What could not be
    listed, or was skipped, is described in ``notes`` when given.
    """
    found: list[str] = []
    visited: set[str] = set()
    notes = notes if notes is not None else []

    def on_error(exc: OSError) -> None:
        notes.append(f"{exc.filename}: cannot list folder ({exc.strerror or exc})")

    for root, dirs, files in os.walk(folder, onerror=on_error, followlinks=True):
        real = os.path.realpath(root)
        if real in visited:
            notes.append(f"{root}: skipped, a folder link back to {real} (already scanned)")
            dirs[:] = []
            continue
        visited.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # .git, .cache, thumbnails
        found.extend(os.path.join(root, f) for f in sorted(files) if accept(f))
    return found


def driver_pillow_limit() -> int | None:
    """Pillow's decompression-bomb limit in this (driver) process. The artstyle command lifts it
    in its own process so that --max-pixels decides; its Ray workers must decode as it would, as
    the local engine's forked processes do."""
    return Image.MAX_IMAGE_PIXELS


def use_pillow_limit(limit: int | None) -> None:
    Image.MAX_IMAGE_PIXELS = limit
