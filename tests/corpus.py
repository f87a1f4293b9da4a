"""A corpus of real bad and awkward image files, made on the fly (nothing binary is committed).

Reused by the data, predict and serve tests::

    from corpus import make_bad_corpus, expected_invalid
    files = make_bad_corpus(tmp_path)          # {name: Path}
    for name in expected_invalid(files): ...   # must fail with ImageLoadError on this machine

Files whose content makes the right answer checkable say so in ``EXPECTED_PIXELS``.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)

# Names whose files no loader may accept; every other file must load as an upright RGB image.
INVALID = frozenset(
    {"zero_byte", "truncated_jpeg", "text_as_jpg", "png_bomb_header", "symlink_loop", "broken_symlink", "unreadable"}
)
# Words the error reason must contain, so users get told *why* (lower-case match).
EXPECTED_REASON = {
    "zero_byte": "empty",
    "truncated_jpeg": "truncated",
    "text_as_jpg": "not an image",
    "png_bomb_header": "too large",
    "symlink_loop": "symbolic links",
    "broken_symlink": "no such file",
    "unreadable": "permission",
}
# name -> (image size after loading, {(x, y): RGB colour expected there})
EXPECTED_PIXELS = {
    # orientation 6: stored 80x40 red|blue, shown rotated 90 degrees clockwise: 40x80, red on top.
    "exif_rotated_jpeg": ((40, 80), {(20, 10): RED, (20, 70): BLUE}),
    # transparent left half flattened onto white, opaque red right half kept.
    "palette_transparent_png": ((40, 20), {(5, 10): WHITE, (35, 10): RED}),
    "cmyk_jpeg": ((32, 32), {(16, 16): RED}),
    "animated_gif": ((24, 24), {(12, 12): RED}),  # first frame is red; later frames green, blue
    "webp_transparent": ((32, 32), {(4, 16): WHITE, (28, 16): BLUE}),
    "one_pixel": ((1, 1), {(0, 0): GREEN}),
    "unicode_space_name": ((16, 16), {(8, 8): BLUE}),
}


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_claiming_size(width: int, height: int) -> bytes:
    """A well-formed PNG (correct CRCs) whose header claims width x height but holds a few bytes
    of pixel data: what a decompression bomb looks like to anything that trusts the header."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    idat = zlib.compress(b"\x00" + b"\x00\x00\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _jpeg_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95, **kwargs)
    return buffer.getvalue()


def _noisy_jpeg(size=(256, 192)) -> bytes:
    # Noise compresses badly, so cutting the file leaves whole scan lines missing, not just padding.
    rng = np.random.default_rng(0)
    return _jpeg_bytes(Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)))


def _two_colour(size, first, second, vertical=False) -> Image.Image:
    image = Image.new("RGB", size, second)
    w, h = size
    image.paste(first, (0, 0, w, h // 2) if vertical else (0, 0, w // 2, h))
    return image


def _exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display (what phones write for portrait shots)
    return _jpeg_bytes(_two_colour((80, 40), RED, BLUE), exif=exif)


def _palette_transparent_png(path: Path) -> None:
    image = Image.new("P", (40, 20), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)  # index 0 black (transparent), 1 red
    image.paste(1, (20, 0, 40, 20))
    image.save(path, transparency=0)


def _gray16_png(path: Path) -> None:
    # A horizontal ramp over the full 16-bit range: 8-bit clipping would turn most of it white.
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (16, 1))
    Image.fromarray(ramp).save(path)  # uint16 -> mode I;16


def _animated_gif(path: Path) -> None:
    frames = [Image.new("RGB", (24, 24), c) for c in (RED, GREEN, BLUE)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)


def _webp_transparent(path: Path) -> None:
    image = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    image.paste((0, 0, 255, 255), (16, 0, 32, 32))
    image.save(path, "WEBP", lossless=True)


def make_bad_corpus(directory) -> dict[str, Path]:
    """Write every bad or awkward file artstyle must survive into ``directory``; returns
    {name: path}. Symlink cases are left out where the OS cannot make symlinks."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    files = {
        "zero_byte": d / "zero_byte.jpg",
        "truncated_jpeg": d / "truncated.jpg",
        "text_as_jpg": d / "text_named.jpg",
        "png_bomb_header": d / "bomb_30000x30000.png",
        "cmyk_jpeg": d / "cmyk.jpg",
        "png_16bit": d / "gray16.png",
        "palette_transparent_png": d / "palette_transparent.png",
        "animated_gif": d / "animated.gif",
        "webp_transparent": d / "transparent.webp",
        "exif_rotated_jpeg": d / "exif_rotated.jpg",
        "one_pixel": d / "one_pixel.png",
        "grayscale_png": d / "grayscale.png",
        "unicode_space_name": d / "été 画像 with spaces.png",
        "unreadable": d / "unreadable.jpg",
    }
    files["zero_byte"].write_bytes(b"")
    noisy = _noisy_jpeg()
    files["truncated_jpeg"].write_bytes(noisy[: len(noisy) * 6 // 10])
    files["text_as_jpg"].write_text("This is a text file, not a JPEG.\n", encoding="utf-8")
    files["png_bomb_header"].write_bytes(png_claiming_size(30000, 30000))
    files["cmyk_jpeg"].write_bytes(_jpeg_bytes(Image.new("CMYK", (32, 32), (0, 255, 255, 0))))  # red
    _gray16_png(files["png_16bit"])
    _palette_transparent_png(files["palette_transparent_png"])
    _animated_gif(files["animated_gif"])
    _webp_transparent(files["webp_transparent"])
    files["exif_rotated_jpeg"].write_bytes(_exif_rotated_jpeg())
    Image.new("RGB", (1, 1), GREEN).save(files["one_pixel"])
    Image.fromarray(np.tile(np.arange(0, 256, 8, dtype=np.uint8), (32, 1))).save(files["grayscale_png"])
    Image.new("RGB", (16, 16), BLUE).save(files["unicode_space_name"])
    files["unreadable"].write_bytes(_jpeg_bytes(Image.new("RGB", (8, 8), RED)))
    files["unreadable"].chmod(0)
    try:
        os.symlink("loop.jpg", d / "loop.jpg")  # points at itself
        os.symlink("does-not-exist.jpg", d / "broken_link.jpg")
        files["symlink_loop"], files["broken_symlink"] = d / "loop.jpg", d / "broken_link.jpg"
    except (OSError, NotImplementedError):  # Windows without developer mode
        pass
    return files


def permission_checks_apply() -> bool:
    """chmod 000 stops nobody running as root (CI containers often do)."""
    return not (hasattr(os, "geteuid") and os.geteuid() == 0)


NOBODY = 65534  # the unprivileged user and group of Linux distributions


def as_unprivileged(fn, *args):
    """``fn(*args)`` as an ordinary user: here when not root, else in a forked child that drops
    root for ``nobody`` (everything is imported already, so the child reads no packages).
    Returns ``fn``'s result, or the exception it raised, as (type name, str)."""
    if permission_checks_apply():
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - handed back for the test to check
            return type(exc).__name__, str(exc)
    import pickle

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            try:
                outcome = fn(*args)
            except Exception as exc:  # noqa: BLE001
                outcome = (type(exc).__name__, str(exc))
            with os.fdopen(write_end, "wb") as pipe:
                pickle.dump(outcome, pipe)
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    return pickle.loads(data)  # our own child's answer


def unprivileged_copy(path: Path, tmp_root: Path | None = None) -> tuple[Path, Path]:
    """``path``'s bytes with its mode in a folder ``nobody`` can enter (pytest's tmp folders are
    root's alone), plus a readable copy beside it: (file, readable control)."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="artstyle-perm-", dir=tmp_root))
    folder.chmod(0o755)
    path.chmod(0o600)
    target, control = folder / path.name, folder / f"readable_{path.name}"
    for copy in (target, control):
        copy.write_bytes(path.read_bytes())
        copy.chmod(0o644)
    target.chmod(0)
    path.chmod(0)
    return target, control


def expected_invalid(files: dict[str, Path]) -> set[str]:
    """Names in ``files`` that must fail to load on this machine."""
    names = set(files) & INVALID
    if not permission_checks_apply():
        names.discard("unreadable")
    return names
