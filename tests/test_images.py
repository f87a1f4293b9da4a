"""The one image loader, on real awkward and broken files."""

from __future__ import annotations

import gc
import io
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from corpus import (
    EXPECTED_PIXELS,
    EXPECTED_REASON,
    INVALID,
    as_unprivileged,
    unprivileged_copy,
)
from PIL import Image

from artstyle.errors import ArtstyleError, ImageLoadError
from artstyle.images import is_image_file, open_image, open_pixels, read_header


def _close(actual, expected, tolerance=6):
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected))


@pytest.mark.parametrize("name", sorted(EXPECTED_PIXELS))
@pytest.mark.parametrize("draft_size", [None, 64])
def test_awkward_images_load_upright_rgb_with_the_right_colours(bad_corpus, name, draft_size):
    size, pixels = EXPECTED_PIXELS[name]
    image = open_image(bad_corpus[name], draft_size=draft_size)
    assert image.mode == "RGB"
    assert image.size == size
    for xy, colour in pixels.items():
        assert _close(image.getpixel(xy), colour), f"{name} at {xy}: {image.getpixel(xy)} != {colour}"


def test_exif_rotated_jpeg_is_stored_sideways_and_comes_out_upright(bad_corpus):
    path = bad_corpus["exif_rotated_jpeg"]
    with Image.open(path) as raw:
        assert raw.size == (80, 40) and raw.getexif()[0x0112] == 6  # the file really is sideways
    upright = open_image(path)
    assert upright.size == (40, 80)
    assert _close(upright.getpixel((20, 5)), (255, 0, 0)) and _close(upright.getpixel((20, 75)), (0, 0, 255))


def test_16_bit_png_is_scaled_to_8_bits_not_clipped(bad_corpus):
    with Image.open(bad_corpus["png_16bit"]) as raw:
        assert raw.mode == "I;16"
    image = open_image(bad_corpus["png_16bit"])
    row = [image.getpixel((x, 8))[0] for x in (0, 32, 63)]
    assert row[0] == 0 and 120 <= row[1] <= 136 and row[2] == 255  # a ramp, not black-then-white


def test_grayscale_becomes_rgb_with_equal_channels(bad_corpus):
    image = open_image(bad_corpus["grayscale_png"])
    r, g, b = image.getpixel((16, 5))
    assert image.mode == "RGB" and r == g == b == 128


def test_rgb_png_with_colour_key_transparency_is_flattened_onto_white(tmp_path):
    # PNG tRNS on an RGB image: one colour (here black) means transparent. It must become white
    # like every other kind of transparency, not stay black.
    image = Image.new("RGB", (10, 10), (0, 0, 0))
    image.paste((255, 0, 0), (5, 0, 10, 10))
    image.save(tmp_path / "key.png", transparency=(0, 0, 0))
    loaded = open_image(tmp_path / "key.png")
    assert loaded.getpixel((1, 1)) == (255, 255, 255) and loaded.getpixel((8, 1)) == (255, 0, 0)


@pytest.mark.parametrize("name", sorted(INVALID - {"unreadable"}))  # that one: test_unreadable_permission
def test_unreadable_files_raise_one_error_type_with_path_and_reason(bad_corpus, name):
    if name not in bad_corpus:
        pytest.skip("this OS cannot make symlinks")
    path = bad_corpus[name]
    with pytest.raises(ImageLoadError) as caught:
        open_image(path)
    error = caught.value
    assert isinstance(error, ArtstyleError)  # the CLI prints it as one line, no traceback
    assert error.path == str(path)
    assert EXPECTED_REASON[name] in error.reason.lower()
    assert "\n" not in str(error) and str(error).startswith(str(path))


def test_decompression_bomb_header_is_refused_before_decoding(bad_corpus):
    path = bad_corpus["png_bomb_header"]
    assert path.stat().st_size < 200  # tiny file, 900 megapixel claim
    # By artstyle's limit, or by Pillow's own when the process keeps it (importing artstyle does).
    with pytest.raises(ImageLoadError, match="too large: (30000x30000 = )?900 megapixels"):
        read_header(path)
    with pytest.raises(ImageLoadError, match="too large"):
        open_image(path, draft_size=64)


def test_importing_artstyle_leaves_pillows_settings_alone():
    # In a fresh interpreter: Pillow's defaults, and a host application's own settings, survive
    # importing every part of artstyle.
    code = """if True:
        import sys
        from PIL import Image, ImageFile
        settings = lambda: (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
        defaults = settings()
        if sys.argv[1] == "custom":
            Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = 1234, True
        before = settings()
        import artstyle, artstyle.images, artstyle.infer, artstyle.data, artstyle.serve, artstyle.engine
        print(before == settings(), settings())
    """
    for case in ("default", "custom"):
        done = subprocess.run([sys.executable, "-c", code, case], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.startswith("True"), (case, done.stdout)


def test_a_pillow_limit_below_artstyles_is_reported_as_too_large(tmp_path):
    # Pillow refuses above twice its MAX_IMAGE_PIXELS from the header; artstyle says so in its words.
    Image.new("RGB", (100, 100), "red").save(tmp_path / "square.png")
    saved = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = 2_000
        with pytest.raises(ImageLoadError, match=r"too large: 0.01 megapixels \(limit 0.004, Pillow's PIL.Image.MAX_IMAGE_PIXELS\)"):
            open_image(tmp_path / "square.png", max_pixels=None)
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def test_pixel_limit_is_configurable(tmp_path):
    Image.new("RGB", (100, 100), "red").save(tmp_path / "square.png")
    with pytest.raises(ImageLoadError, match="limit"):
        open_image(tmp_path / "square.png", max_pixels=5_000)
    assert open_image(tmp_path / "square.png", max_pixels=None).size == (100, 100)


def test_draft_mode_decodes_large_jpeg_small_but_not_below_the_target(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (1500, 2000, 3), dtype=np.uint8)).save(tmp_path / "big.jpg", quality=80)
    full = open_image(tmp_path / "big.jpg")
    small = open_image(tmp_path / "big.jpg", draft_size=150)
    assert full.size == (2000, 1500)
    assert min(small.size) >= 150 and small.size[0] <= 2000 // 8 + 1  # libjpeg's 1/8 scale
    assert read_header(tmp_path / "big.jpg")[:2] == (2000, 1500)  # the header still tells the truth


def pixels_of(decoded) -> np.ndarray:
    return np.asarray(decoded)


@pytest.mark.parametrize("mode, subsampling", [("RGB", 0), ("RGB", 1), ("RGB", 2), ("L", 0)])  # 4:4:4, 4:2:2, 4:2:0, grey
@pytest.mark.parametrize("progressive", [False, True])
def test_fast_jpeg_path_gives_pillows_pixels_at_every_draft_scale(tmp_path, subsampling, progressive, mode):
    """libjpeg-turbo through simplejpeg must give the pixels Pillow gives, bit for bit, at the
    reduction Pillow's draft picks (1, 1/2, 1/4, 1/8): models are validated on Pillow's."""
    rng = np.random.default_rng(subsampling)
    smooth = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize((1795, 1001), Image.BICUBIC)
    path = tmp_path / "photo.jpg"
    smooth.convert(mode).save(path, quality=90, subsampling=subsampling, progressive=progressive)
    for draft_size in (None, 100, 224, 300, 1001):
        fast = open_pixels(path, draft_size=draft_size)
        assert isinstance(fast, np.ndarray) and fast.dtype == np.uint8 and fast.shape[2] == 3
        np.testing.assert_array_equal(fast, pixels_of(open_image(path, draft_size=draft_size)))
    assert open_pixels(path, draft_size=224).shape == (251, 449, 3)  # 1/4, rounded up: both sides >= 224


def test_fast_jpeg_path_gives_pillows_pixels_on_real_images(shared_data):
    files = sorted(shared_data.glob("*/*.jpg"))[::97]
    assert len(files) > 50
    for path in files:
        fast = open_pixels(path, draft_size=224)
        assert isinstance(fast, np.ndarray), path
        np.testing.assert_array_equal(fast, pixels_of(open_image(path, draft_size=224)), err_msg=str(path))


def test_jpegs_that_pillow_would_turn_or_not_draft_go_through_pillow(tmp_path):
    """XMP's orientation (read by Pillow when there is no EXIF) turns the image upright, and an
    MPO (a camera's multi-picture JPEG) is decoded by Pillow at full size: the fast path must
    give the same result, so it leaves both to Pillow."""
    from artstyle.images import fast_jpeg_matches_pillow

    assert fast_jpeg_matches_pillow()  # this environment's Pillow is built on libjpeg-turbo
    wide = Image.new("RGB", (500, 300), (200, 30, 30))
    wide.paste((30, 30, 200), (0, 0, 250, 300))
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>')
    wide.save(tmp_path / "xmp.jpg", xmp=xmp)
    wide.save(tmp_path / "camera.mpo", "MPO", save_all=True, append_images=[wide.rotate(180)])
    for name in ("xmp.jpg", "camera.mpo"):
        np.testing.assert_array_equal(pixels_of(open_pixels(tmp_path / name, draft_size=100)),
                                      pixels_of(open_image(tmp_path / name, draft_size=100)), err_msg=name)
    assert pixels_of(open_pixels(tmp_path / "xmp.jpg")).shape == (500, 300, 3)  # upright: tall


def test_open_pixels_does_not_block_on_a_fifo(tmp_path):
    import os
    import threading

    os.mkfifo(tmp_path / "pipe.jpg")
    outcome = []
    reader = threading.Thread(target=lambda: outcome.append(load_outcome(tmp_path / "pipe.jpg", open_pixels)), daemon=True)
    reader.start()
    reader.join(timeout=10)
    assert outcome == [("ImageLoadError", f"{tmp_path / 'pipe.jpg'}: empty file (0 bytes)")]


@pytest.mark.parametrize("name", sorted(EXPECTED_PIXELS))
def test_awkward_files_give_the_same_pixels_through_open_pixels(bad_corpus, name):
    # EXIF (turned upright), CMYK and every other format go through Pillow's path.
    np.testing.assert_array_equal(pixels_of(open_pixels(bad_corpus[name], draft_size=64)),
                                  pixels_of(open_image(bad_corpus[name], draft_size=64)))


@pytest.mark.parametrize("name", sorted(INVALID - {"unreadable"}))
def test_open_pixels_reports_bad_files_as_open_image_does(bad_corpus, name):
    if name not in bad_corpus:
        pytest.skip("this OS cannot make symlinks")
    with pytest.raises(ImageLoadError) as fast:
        open_pixels(bad_corpus[name])
    with pytest.raises(ImageLoadError) as pillow:
        open_image(bad_corpus[name])
    assert str(fast.value) == str(pillow.value)
    data = bad_corpus[name].read_bytes() if bad_corpus[name].is_file() else b""
    with pytest.raises(ImageLoadError, match="^upload.jpg: "):
        open_pixels(data, name="upload.jpg")


def test_a_jpeg_claiming_too_many_pixels_is_refused_by_open_pixels():
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), "red").save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = (30000).to_bytes(2, "big") * 2  # height, width in the frame header
    with pytest.raises(ImageLoadError, match="^big.jpg: too large: (30000x30000 = )?900 megapixels"):
        open_pixels(bytes(data), name="big.jpg")


def test_bytes_and_file_objects_load_like_paths(bad_corpus):
    path = bad_corpus["exif_rotated_jpeg"]
    data = path.read_bytes()
    assert open_image(data).size == open_image(io.BytesIO(data)).size == (40, 80)
    with pytest.raises(ImageLoadError, match="empty"):
        open_image(b"", name="upload.jpg")
    with pytest.raises(ImageLoadError, match="upload.jpg: not an image"):
        open_image(b"hello", name="upload.jpg")


def test_a_folder_is_not_an_image(tmp_path):
    (tmp_path / "folder.jpg").mkdir()
    with pytest.raises(ImageLoadError, match="directory"):
        open_image(tmp_path / "folder.jpg")


def test_failed_loads_release_their_file_at_once(bad_corpus):
    # A server or a scan fed thousands of bad files must not leave each one open for the
    # garbage collector to find (ResourceWarning: unclosed file).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for name in ("truncated_jpeg", "png_bomb_header"):
            with pytest.raises(ImageLoadError):
                open_image(bad_corpus[name])
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def load_outcome(path: Path, opener=open_image):
    """What open_image (or ``opener``) makes of ``path``: its size, or (error type, message)."""
    try:
        return opener(path).size
    except ImageLoadError as exc:
        return "ImageLoadError", str(exc)


def test_unreadable_permission(bad_corpus):
    # Root reads a chmod 000 file regardless, so this runs as the unprivileged user nobody.
    path, control = unprivileged_copy(bad_corpus["unreadable"])
    try:
        assert as_unprivileged(load_outcome, control) == (8, 8)  # the folder is open to that user
        kind, message = as_unprivileged(load_outcome, path)
        assert kind == "ImageLoadError" and message == f"{path}: Permission denied"
        # The scanner records it as an invalid row with the reason, as it would any bad file.
        pytest.importorskip("imagehash", reason="the scanner needs the data extra: pip install 'artstyle[data]'")
        from artstyle.data.measure import inspect_file

        row = as_unprivileged(inspect_file, str(path))
        assert not row["valid"] and "ermission" in row["error"]
    finally:
        shutil.rmtree(path.parent)


def test_is_image_file_skips_hidden_files_and_other_extensions():
    assert is_image_file("a/b/photo.JPG") and is_image_file("x.webp") and is_image_file("été 画像.png")
    assert not is_image_file("a/.hidden.jpg") and not is_image_file("notes.txt") and not is_image_file("jpg")


def test_predict_and_scan_walk_folders_the_same_way(tmp_path):
    """One folder walker: a linked folder is followed by predict as by the scan, a link back up
    the tree is visited once, hidden folders are skipped."""
    import os

    from PIL import Image

    pytest.importorskip("pandas", reason="the scan needs the data extra: pip install 'artstyle[data]'")
    pytest.importorskip("imagehash", reason="the scan needs the data extra: pip install 'artstyle[data]'")
    from artstyle.data import scan
    from artstyle.infer.sources import expand_inputs

    (tmp_path / "extra").mkdir()
    (tmp_path / "data" / "cat" / ".cache").mkdir(parents=True)
    for path in (tmp_path / "extra" / "a.png", tmp_path / "data" / "cat" / "b.png", tmp_path / "data" / "cat" / ".cache" / "c.png"):
        Image.new("RGB", (40, 30), (200, 10, 10)).save(path)
    os.symlink(tmp_path / "extra", tmp_path / "data" / "cat" / "linked")
    os.symlink(tmp_path / "data", tmp_path / "data" / "cat" / "loop")
    predicted = {os.path.relpath(p, tmp_path / "data") for p in expand_inputs([str(tmp_path / "data")])}
    scanned = {os.path.relpath(p, tmp_path / "data") for p in scan(tmp_path / "data", progress=False)["path"]}
    assert predicted == scanned == {"cat/b.png", "cat/linked/a.png"}
