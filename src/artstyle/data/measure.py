"""``inspect_file``: what the scan measures of one image file (size, hash, header, perceptual
hash, validity). Its own module so that every engine of the scan (the local process pool, Ray
tasks) runs the same function without importing the scanner that dispatches to them."""

from __future__ import annotations

import hashlib
from typing import Optional

import imagehash

from ..errors import ImageLoadError
from ..images import DEFAULT_MAX_PIXELS, open_image, read_header

# phash looks at a 32x32 grayscale thumbnail, so libjpeg may decode at 1/2, 1/4 or 1/8 scale
# (draft mode) as long as both sides stay >= 64 px. Measured: a 12-megapixel photo takes 45 ms
# instead of 300 ms; artstyle-v1's small JPEGs (<= 384 px) ~1.3 ms instead of ~2 ms (decode +
# phash). The hash moves by 0.2 bits on average (max 4) versus a full decode; decoding at >= 32
# px moved it by up to 10 bits, too noisy for near-duplicate detection.
PHASH_DRAFT_SIZE = 64

def inspect_file(path: str, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> dict:
    """Measure one file: size, sha256, header, and a perceptual hash of the decoded image.

    Never raises: a file that cannot be read comes back with ``valid=False`` and the reason,
    so one bad file cannot stop a scan of thousands.
    """
    row = {
        "path": path,
        "width": 0,
        "height": 0,
        "format": "",
        "mode": "",
        "bytes": 0,
        "sha256": "",
        "phash": "",
        "valid": False,
        "error": "",
    }
    try:
        # Read once: the same bytes feed the hash and the decoder (no second trip to the disk).
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        row["error"] = exc.strerror or type(exc).__name__
        return row
    row["bytes"] = len(data)
    row["sha256"] = hashlib.sha256(data).hexdigest()
    try:
        row["width"], row["height"], row["format"], row["mode"] = read_header(data, name=path, max_pixels=max_pixels)
        image = open_image(data, name=path, max_pixels=max_pixels, draft_size=PHASH_DRAFT_SIZE)
        row["phash"] = str(imagehash.phash(image))
        row["valid"] = True
    except ImageLoadError as exc:
        row["error"] = exc.reason
    except Exception as exc:  # noqa: BLE001 - a decoder bug on one odd file must not end the scan
        row["error"] = f"unexpected {type(exc).__name__}: {exc}"
    return row
