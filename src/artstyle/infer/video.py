"""Video classification: is a film anime, a Western cartoon or live action with people?

A video is recognised by its first bytes (MP4/MOV's ``ftyp`` box, Matroska/WebM's EBML header,
``RIFF....AVI``, an animated GIF or WebP), not by its name. OpenCV's ``VideoCapture`` (FFmpeg,
carried by the opencv-python-headless wheel) decodes it; an animated GIF or WebP that it cannot
read (the wheel's FFmpeg has no animated-WebP decoder) is read by Pillow instead.

A few frames are sampled (``--frames N`` spread evenly over the video, skipping the first and
last 5 %: openings and credits; or one every ``--every`` seconds), each goes through the same
crop and resize as an image, and the model sees them in batches as they are decoded, so memory
holds one batch of model-sized crops whatever the film's length. The video's row is the mean of
the frames' calibrated probabilities, plus the share of frames each class wins.
"""

from __future__ import annotations

import base64
import contextlib
import io
import itertools
import os
import tempfile
from dataclasses import dataclass, field
from typing import Iterator

import cv2
import numpy as np
from PIL import Image, ImageSequence

from ..errors import ImageLoadError
from ..images import BYTES_TYPES, DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, check_pixels, to_rgb
from ..preprocess import to_crop
from .prediction import Prediction, make_prediction
from .sources import VIDEO_EXTENSIONS, is_url

DEFAULT_FRAMES = 16

# Suffixes that may hold an animation, which counts as a video when it has more than one frame.
ANIMATION_EXTENSIONS = frozenset({".gif", ".webp"})
# --frames skips this share of the video at each end: openings and end credits say little.
EDGE = 0.05
SNIFF_BYTES = 64
# ISO-BMFF brands of still images (HEIF, AVIF), which share MP4's ftyp box.
IMAGE_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif"})
# Old QuickTime files start with one of these atoms instead of ftyp.
QUICKTIME_ATOMS = frozenset({b"moov", b"mdat", b"wide", b"pnot"})
CONTAINERS = "MP4, MOV, Matroska/WebM, AVI, animated GIF or WebP"
# Frames further apart than this are reached by seeking rather than by decoding (grab) every
# frame between them. A seek decodes from the keyframe before its target: on a 720p H.264 film
# with x264's default keyframe interval (250 frames) it cost 170 to 220 grabs, so the default
# 16 frames of a 20-minute film (1,600 frames apart) are read about 10x faster by seeking, while
# frames 10 s apart (240 at 24 fps) cost about the same either way (bench/bench_video.py; grab
# was the faster of the two on a quiet machine). OpenCV's seeks are frame-exact.
SEEK_MIN_GAP = 300
THUMBNAIL_SIZE = 96
# The last frames a container's count may promise without having them (CvFrames.read).
COUNT_SLACK = 2


@dataclass
class FramePrediction(Prediction):
    """One sampled frame's answer: ``index`` in the video and its time in seconds; ``thumbnail``
    (a small JPEG data URL) when asked for, for a page that shows the frames."""

    index: int = 0
    time_s: float = 0.0
    thumbnail: str | None = None

    def to_dict(self) -> dict:
        return {**super().to_dict(), "index": self.index, "time_s": self.time_s, "thumbnail": self.thumbnail}


@dataclass
class VideoPrediction(Prediction):
    """A video's answer: ``probs`` is the mean of its frames' probabilities, ``label`` their best
    class; ``frames`` sampled frames were used, ``shares`` is the fraction of them each class
    wins, and ``per_frame`` holds each frame's own answer."""

    frames: int = 0
    duration_s: float | None = None
    shares: dict[str, float] = field(default_factory=dict)
    per_frame: list[FramePrediction] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {**super().to_dict(), "frames": self.frames, "duration_s": self.duration_s,
                "shares": dict(self.shares), "per_frame": [f.to_dict() for f in self.per_frame]}


# ------------------------------------------------------------------------------ recognising


def container_of(head: bytes) -> str | None:
    """The video container that a file's first bytes announce (GIF: any GIF, animated or not)."""
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return None if brand in IMAGE_BRANDS else "MOV" if brand == b"qt  " else "MP4"
    if head[4:8] in QUICKTIME_ATOMS:
        return "MOV"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "WebM" if b"webm" in head else "Matroska"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "AVI"
    # An animated WebP is an extended one (VP8X) with the animation flag set.
    if head[:4] == b"RIFF" and head[8:16] == b"WEBPVP8X" and len(head) > 20 and head[20] & 0x02:
        return "WebP"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    return None


def read_head(source) -> bytes:
    """The first bytes of a path or bytes (``OSError`` when the path cannot be read)."""
    if isinstance(source, BYTES_TYPES):
        return bytes(source[:SNIFF_BYTES])
    with open(source, "rb") as f:
        return f.read(SNIFF_BYTES)


def is_video(source) -> bool:
    """Whether a path or bytes hold a video (by content): a video container, or a GIF with more
    than one frame. URLs, file objects and PIL images are never videos here."""
    if not isinstance(source, (str, os.PathLike, *BYTES_TYPES)) or is_url(source):
        return False
    if not isinstance(source, BYTES_TYPES) and not os.path.isfile(source):
        return False  # opening a pipe or device would wait for ever; the image path says what it is
    try:
        kind = container_of(read_head(source))
    except OSError:
        return False  # the image path says why it cannot be read
    return kind == "GIF" and is_animated(source) or kind not in (None, "GIF")


def takes_video_path(source) -> bool:
    """Whether ``predict`` classifies ``source`` as a video: its content is one, or it is named
    as one and is no image either (its error then says it is not a video, rather than not an
    image)."""
    if is_video(source):
        return True
    named = isinstance(source, (str, os.PathLike)) and not is_url(source)
    return named and os.path.splitext(source)[1].lower() in VIDEO_EXTENSIONS and not is_image(source)


def is_image(path) -> bool:
    try:
        with Image.open(path):
            return True
    except Exception:  # noqa: BLE001 - anything Pillow cannot identify is not an image to it
        return False


def may_be_video(path: str) -> bool:
    """From the name (and, for GIF and WebP, the content): whether an input of a run may be a
    video, so that the rows get the video columns. Still-image suffixes are not opened."""
    if is_url(path):
        return False
    suffix = os.path.splitext(path)[1].lower()
    if suffix in ANIMATION_EXTENSIONS:
        return is_video(path)
    return suffix not in IMAGE_EXTENSIONS


def is_animated(source) -> bool:
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, BYTES_TYPES) else source) as img:
            return bool(getattr(img, "is_animated", False))
    except Exception:  # noqa: BLE001 - any unreadable GIF is left to the image path to report
        return False


# ------------------------------------------------------------------------------ sampling


def frame_plan(frame_count: int, fps: float, frames: int = DEFAULT_FRAMES, every: float | None = None) -> list[int]:
    """The frame indices to classify, in order: one every ``every`` seconds from the start, or
    ``frames`` spread evenly over the middle 90 % (the centres of equal parts of it). A video
    shorter than the plan gives each of its frames once."""
    if every:
        step = every * fps
        indices = (round(k * step) for k in range(int((frame_count - 1) / step) + 1))
    else:
        start, span = EDGE * frame_count, (1 - 2 * EDGE) * frame_count
        indices = (int(start + (i + 0.5) * span / frames) for i in range(frames))
    return sorted({min(i, frame_count - 1) for i in indices})


# ------------------------------------------------------------------------------ reading frames


class CvFrames:
    """Frames of a video file through OpenCV's FFmpeg backend, as RGB arrays."""

    def __init__(self, path: str, label: str, container: str):
        self.label, self.container = label, container
        self.capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
        if not self.capture.isOpened():
            raise ImageLoadError(label, f"cannot open this {container} file: no video track, truncated or "
                                        f"corrupt, or a codec this OpenCV build ({cv2.__version__}) cannot read")
        self.fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.frame_count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT))
        width, height = (int(self.capture.get(p)) for p in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT))
        if width <= 0 or height <= 0 or self.frame_count == 0:
            raise ImageLoadError(label, f"no video track in this {container} file")
        if width * height > DEFAULT_MAX_PIXELS:
            raise ImageLoadError(label, f"frames too large: {width}x{height}")
        if self.fps <= 0 or self.fps > 1000:
            raise ImageLoadError(label, f"no usable frame rate in this {container} file ({self.fps:g})")
        if self.frame_count < 0:  # a stream that does not say: count by decoding, then start again
            self.frame_count = self.count_frames(path)
        self.position = 0

    def count_frames(self, path: str) -> int:
        count = 0
        while self.capture.grab():
            count += 1
        self.capture.release()
        self.capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
        if not count:
            raise ImageLoadError(self.label, f"no readable frame in this {self.container} file")
        return count

    def time_of(self, index: int) -> float:
        return index / self.fps

    def read(self, indices: list[int]) -> Iterator[tuple[int, np.ndarray]]:
        """(index, RGB frame) for each of ``indices`` (ascending). A near frame is reached by
        decoding the frames before it (grab), a far one by seeking; only wanted frames are
        converted to RGB. A frame that cannot be decoded is an error (a truncated or damaged
        file), except one of the last ``COUNT_SLACK``: a frame count made from the duration
        (Matroska, WebM) may overshoot by a frame, and the frames before are all there is."""
        for index in indices:
            if index - self.position > SEEK_MIN_GAP or index < self.position:
                self.capture.set(cv2.CAP_PROP_POS_FRAMES, index)
                self.position = index
            while self.position < index and self.capture.grab():
                self.position += 1
            ok = self.position == index and self.capture.grab()
            frame = self.capture.retrieve()[1] if ok else None
            if frame is None and index >= self.frame_count - COUNT_SLACK and index > indices[0]:
                return
            if frame is None:
                raise unreadable_frame(self, index)
            self.position = index + 1
            yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        self.capture.release()


class PillowFrames:
    """Frames of an animated GIF or WebP through Pillow, each held for its own duration."""

    def __init__(self, path: str, label: str, container: str):
        self.label = label
        try:
            self.image = Image.open(path)
            check_pixels(self.image, label, DEFAULT_MAX_PIXELS)
            # WebP sets a frame's duration when the frame is loaded: one pass over the frames.
            durations = [load_frame(frame).info.get("duration", 0) or 0 for frame in ImageSequence.Iterator(self.image)]
        except ImageLoadError:
            raise
        except Exception as exc:  # noqa: BLE001 - Pillow raises many types for a damaged file
            raise ImageLoadError(label, f"cannot read this {container} animation: truncated or corrupt "
                                        f"({str(exc) or type(exc).__name__})") from None
        # Browsers show a frame of 0 ms (or none given) for 100 ms.
        durations = [d if d > 0 else 100 for d in durations]
        self.starts = np.concatenate([[0.0], np.cumsum(durations)[:-1]]) / 1000.0
        self.frame_count = len(durations)
        self.fps = self.frame_count / (sum(durations) / 1000.0)

    def time_of(self, index: int) -> float:
        return float(self.starts[index])

    def read(self, indices: list[int]) -> Iterator[tuple[int, np.ndarray]]:
        for index in indices:
            try:
                self.image.seek(index)
                frame = np.asarray(to_rgb(self.image.copy()))
            except Exception as exc:  # noqa: BLE001
                raise unreadable_frame(self, index, f" ({exc})") from None
            yield index, frame

    def close(self) -> None:
        self.image.close()


def unreadable_frame(reader: CvFrames | PillowFrames, index: int, detail: str = "") -> ImageLoadError:
    return ImageLoadError(reader.label, f"truncated or corrupt: the frame at {reader.time_of(index):.2f} s "
                                        f"(frame {index} of {reader.frame_count}) cannot be decoded{detail}")


def load_frame(image: Image.Image) -> Image.Image:
    image.load()
    return image


@contextlib.contextmanager
def local_file(source, suffix: str):
    """A path OpenCV can open: the path itself, or bytes (an upload) in a temporary file."""
    if not isinstance(source, BYTES_TYPES):
        yield os.fspath(source)
        return
    with tempfile.NamedTemporaryFile(suffix=suffix, prefix="artstyle-video-") as f:
        f.write(source)
        f.flush()
        yield f.name


@contextlib.contextmanager
def open_frames(source, label: str):
    """The frame reader for a video path or bytes; ``ImageLoadError`` naming ``label`` when it is
    empty, not a video, or cannot be read."""
    if not isinstance(source, BYTES_TYPES) and os.path.exists(source) and not os.path.isfile(source):
        raise ImageLoadError(label, "not a regular file")
    try:
        head = read_head(source)
    except OSError as exc:
        raise ImageLoadError(label, exc.strerror or type(exc).__name__) from None
    if not head:
        raise ImageLoadError(label, "empty file (0 bytes)")
    container = container_of(head)
    if container is None:
        what = "WAVE audio" if head[8:12] == b"WAVE" else "unrecognised content"
        raise ImageLoadError(label, f"not a video ({what}; expected {CONTAINERS})")
    with local_file(source, f".{container.lower()}") as path:
        try:
            reader = open_reader(path, label, container)
        except cv2.error as exc:
            raise ImageLoadError(label, f"cannot read this {container} file ({str(exc).splitlines()[0]})") from None
        try:
            yield reader
        finally:
            reader.close()


def open_reader(path: str, label: str, container: str) -> CvFrames | PillowFrames:
    if container not in ("GIF", "WebP"):
        return CvFrames(path, label, container)
    with contextlib.suppress(ImageLoadError):
        reader = CvFrames(path, label, container)
        try:
            # The FFmpeg in OpenCV's wheel opens an animated WebP but decodes no frame of it.
            next(reader.read([0]))
            return reader
        except ImageLoadError:
            reader.close()
    return PillowFrames(path, label, container)


# ------------------------------------------------------------------------------ classifying


def classify_video(clf, source, *, name: str | None = None, frames: int = DEFAULT_FRAMES,
                   every: float | None = None, thumbnails: bool = False) -> VideoPrediction:
    """``Classifier.predict_video`` for ``clf``, a ``Classifier``: see there."""
    check_sampling(frames, every)
    label = name or str(source if not isinstance(source, BYTES_TYPES) else "<bytes>")
    with open_frames(source, label) as reader:
        plan = frame_plan(reader.frame_count, reader.fps, frames, every)
        # Each frame is cropped as soon as it is decoded, and the model takes a batch of crops
        # at a time: one full-size frame and one batch of crops are all a film holds in memory.
        crops = ((index, to_crop(rgb, clf.image_size, clf.crop_pct, name=label)) for index, rgb in reader.read(plan))
        per_frame = []
        while batch := list(itertools.islice(crops, clf.batch_size)):
            probs = clf.run(np.stack([clf.model_input(crop) for _, crop in batch]))
            for (index, crop), p in zip(batch, probs):
                per_frame.append(FramePrediction(**vars(clf.to_prediction(label, p)), index=index,
                                                 time_s=round(reader.time_of(index), 3),
                                                 thumbnail=thumbnail(crop) if thumbnails else None))
        duration = reader.frame_count / reader.fps
    return summarise(label, per_frame, clf.classes, clf.min_confidence, duration)


def check_sampling(frames: int, every: float | None) -> None:
    if every is not None and every <= 0:
        raise ValueError(f"every must be a positive number of seconds, not {every}")
    if every is None and frames < 1:
        raise ValueError(f"frames must be at least 1, not {frames}")


def summarise(label: str, per_frame: list[FramePrediction], classes: list[str], min_confidence: float,
              duration: float) -> VideoPrediction:
    """The video's row: the mean of the frames' probabilities, and each class's share of the
    frames labelled with it (a frame below ``min_confidence``, "uncertain", counts for none)."""
    if not per_frame:
        raise ImageLoadError(label, "no readable frame")
    mean = np.mean([[f.probs[c] for c in classes] for f in per_frame], axis=0)
    labels = [f.label for f in per_frame]
    shares = {c: round(labels.count(c) / len(labels), 6) for c in classes}
    return VideoPrediction(**vars(make_prediction(label, mean, classes, min_confidence)), frames=len(per_frame),
                           duration_s=round(duration, 3), shares=shares, per_frame=per_frame)


def thumbnail(crop: np.ndarray) -> str:
    """The model's view of a frame as a small JPEG data URL."""
    small = cv2.resize(crop, (THUMBNAIL_SIZE, THUMBNAIL_SIZE), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
    return "data:image/jpeg;base64," + base64.b64encode(data.tobytes()).decode("ascii")
