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

A planned frame far from the last one read is taken, by default, as the frame 16 after the
keyframe nearest it, which OpenCV's seek decodes from that keyframe alone; a frame-exact seek
decodes every frame from the keyframe before (6x the time on an H.264 film: ``CvFrames``).
Each frame carries its own timestamp; ``exact_frames`` (``--exact-frames``) reads the planned
frames themselves.
"""

from __future__ import annotations

import base64
import contextlib
import io
import itertools
import math
import os
import tempfile
import threading
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
# OpenCV's seek to frame t (CAP_PROP_POS_FRAMES) starts decoding at the last keyframe at or
# before t - 16 and decodes every frame from there up to t (CvCapture_FFMPEG::seek in videoio's
# cap_ffmpeg_impl.hpp). So the frame 16 after a keyframe costs 17 decodes, whereas frame t costs
# t minus the keyframe before t - 16: on a 720p H.264 film with x264's default keyframe interval
# (250 frames) a frame-exact seek cost as much as grabbing 132 frames, 6.3 times a read aligned on
# a keyframe (bench/bench_video.py).
OPENCV_SEEK_BACK = 16
# A read aligned on a keyframe (a seek and 17 decodes) costs about as much as grabbing 21 to 32
# frames in a row (bench runs): frames this near are reached by grabbing, which is also exact.
GRAB_MAX = 32
# Where only frame-exact seeks will do (--exact-frames, or no keyframe near a target), frames
# nearer than this are grabbed rather than sought: a frame-exact seek decodes 16 to 266 frames.
SEEK_MIN_GAP = 300
# OpenCV 5's demux-only mode (``Keyframes``) gives each packet its time; OpenCV 4's leaves
# CAP_PROP_POS_MSEC at the last decoded frame's (4.10 and 4.12 checked), so there every frame is
# read frame-exact.
KEYFRAME_READS = int(cv2.__version__.split(".")[0]) >= 5
# Packets the demux-only capture reads, at most, looking for the keyframes around a target
# (about 10 µs each: reading, not decoding).
MAX_KEY_SCAN = 1500
# Frames an exact seek may decode beyond an aligned read's 17 and still be preferred, for the
# exact frame.
EXACT_SLACK = 8
# Decoding every keyframe in a row, skipping the frames between (``KEYFRAME_ONLY``), cost 4.1
# to 4.6 times less per keyframe than an aligned read (bench/bench_video.py): targets at least a
# quarter as many as the keyframes before the last one are read in one such pass.
KEYFRAME_PASS_GAIN = 4
# OpenCV hands the options in this variable to FFmpeg when a capture opens (key;value|key;value);
# only ``avdiscard`` reaches the decoder (its skip_frame), the rest go to the demuxer. With
# nonkey, grab() decodes keyframes only. OpenCV's seek counts decoded frames, so such a capture
# cannot seek: it is only read straight through.
CAPTURE_OPTIONS = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
KEYFRAME_ONLY = "avdiscard;nonkey"
# The variable is process-wide. Every capture of this module opens under this lock, with the
# variable set for the keyframe-only one and as the user left it for the others, so no open
# sees another's options. (Another thread of the process that opens a capture of its own, or
# reads the environment from C while the variable changes, is outside the lock; nothing in
# artstyle does.)
_CAPTURE_OPTIONS_LOCK = threading.Lock()
# Decode on one thread: the frames are read a few at a time after each seek, where FFmpeg's frame
# threads only add their start-up and a frame of delay per thread (bench/bench_video.py: about
# half the time for 16 frames of a 720p H.264 film), and the model has the other cores.
ONE_THREAD = [cv2.CAP_PROP_N_THREADS, 1]
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
        step = every_step(fps, every)
        indices = (round(k * step) for k in range(every_count(frame_count, fps, every)))
    else:
        start, span = EDGE * frame_count, (1 - 2 * EDGE) * frame_count
        indices = (int(start + (i + 0.5) * span / frames) for i in range(frames))
    return sorted({min(i, frame_count - 1) for i in indices})


def every_step(fps: float, every: float) -> float:
    """Frames between two samples one every ``every`` seconds; at least one, as a video has no
    frames between its frames (a tiny ``every`` would otherwise count up to infinity)."""
    return max(every * fps, 1.0)


def every_count(frame_count: int, fps: float, every: float) -> int:
    """How many frames one every ``every`` seconds samples, counted before they are planned."""
    return int((frame_count - 1) / every_step(fps, every)) + 1


# ------------------------------------------------------------------------------ reading frames


class CvFrames:
    """Frames of a video file through OpenCV's FFmpeg backend, as RGB arrays.

    A far frame is reached by seeking, and OpenCV's seeks are frame-exact: they decode from the
    keyframe before the target (``OPENCV_SEEK_BACK``). Unless ``exact``, a target is read at the
    frame 16 after a keyframe near it instead (17 decodes), when that frame lies closer to this
    target than to its neighbours, so that each part of the video still gives its own frame; the
    keyframes are found by a second, demux-only capture (``Keyframes``), which reads packets and
    decodes none. All-intra codecs (MJPEG), short videos and targets without a keyframe near
    them are read frame-exact, which there costs no more or cannot be helped. Each frame comes
    with its index and its own timestamp."""

    def __init__(self, path: str, label: str, container: str, exact: bool = False):
        self.path, self.label, self.container = path, label, container
        self.exact = exact or not KEYFRAME_READS
        self.capture = open_capture(path, ONE_THREAD)
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
        self.position = 0  # the frame the next grab() decodes
        self.keyframes: Keyframes | None = None  # opened at the first seek that may use it

    def count_frames(self, path: str) -> int:
        count = 0
        while self.capture.grab():
            count += 1
        self.capture.release()
        self.capture = open_capture(path, ONE_THREAD)
        if not count:
            raise ImageLoadError(self.label, f"no readable frame in this {self.container} file")
        return count

    def time_of(self, index: int) -> float:
        return index / self.fps

    def read(self, targets: list[int]) -> Iterator[tuple[int, float, np.ndarray]]:
        """(index, time in seconds, RGB frame) for each of ``targets`` (ascending frame indices):
        the target itself, or a frame near it that is cheaper to decode (see the class), in
        one keyframe-only pass when that pays. Only the frames used are converted to RGB. A
        frame that cannot be decoded is an error (a truncated or damaged file), except one of
        the last ``COUNT_SLACK``: a frame count made from the duration (Matroska, WebM) may
        overshoot by a frame, and the frames before are all there is."""
        planned = list(zip(targets, sampling_windows(targets, self.frame_count)))
        last, done = -1, 0
        if self.keyframe_pass_pays(targets):
            for index, time_s, frame in self.read_keyframes(planned):
                last, done = index, done + 1
                yield index, time_s, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        for target, (low, high) in planned[done:]:
            read = self.read_near(target, max(low, last + 1), high, first=target == targets[0])
            if read is None:
                return
            last = read[0]
            yield read[0], read[1], cv2.cvtColor(read[2], cv2.COLOR_BGR2RGB)

    def read_near(self, target: int, low: int, high: int, first: bool) -> tuple[int, float, np.ndarray] | None:
        """(index, time, BGR frame) for ``target`` read on its own (``frame_to_read``); None for a
        missing frame among the last ``COUNT_SLACK`` (not the ``first`` target's)."""
        index, near = self.frame_to_read(target, low, high)
        frame = self.decode(index, near)
        if frame is None and index >= self.frame_count - COUNT_SLACK and not first:
            return None
        if frame is None:
            raise unreadable_frame(self, index)
        return index, self.timestamp(index), frame

    def keyframe_pass_pays(self, targets: list[int]) -> bool:
        """Whether decoding every keyframe from the start, in one pass, costs less than reading
        each target on its own: the targets are far apart (else grabbing wins) and dense among
        the keyframes, judged by the keyframe interval around the first target."""
        if self.exact or len(targets) < 2 or min(np.diff(targets)) <= GRAB_MAX:
            return False
        before, after = self.key_index().around(targets[0], targets[0] + MAX_KEY_SCAN)
        if before is None or after is None or after - before <= OPENCV_SEEK_BACK:
            return False  # keyframes unknown, or every frame one (all-intra): no gain
        return targets[-1] / (after - before) <= KEYFRAME_PASS_GAIN * len(targets)

    def read_keyframes(self, planned: list[tuple[int, tuple[int, int]]]) -> Iterator[tuple[int, float, np.ndarray]]:
        """(index, time, BGR frame) for the ``planned`` targets (with their windows) in order:
        each the keyframe nearest it in its window, from one keyframe-only pass; a target with
        none in its window is read on its own (``read_near``). Ends early where the pass does (a
        truncated or damaged file: ``read`` takes the remaining targets one by one)."""
        capture = open_capture(self.path, ONE_THREAD, keyframes_only=True)
        try:
            pending = iter(planned)
            target, (low, high) = next(pending)
            best = None
            while capture.grab():
                msec = capture.get(cv2.CAP_PROP_POS_MSEC)
                key = round(msec * self.fps / 1000)
                while key > high:  # past the target's window: its frame is settled
                    read = best or self.read_near(target, low, high, first=target == planned[0][0])
                    if read is None:
                        return
                    yield read
                    best = None
                    step = next(pending, None)
                    if step is None:
                        return
                    target, (low, high) = step
                    low = max(low, read[0] + 1)
                if key >= low and (best is None or abs(key - target) < abs(best[0] - target)):
                    ok, frame = capture.retrieve()
                    best = (key, msec / 1000, frame) if ok else best
            if best is not None:
                yield best
        finally:
            capture.release()

    def key_index(self) -> Keyframes:
        if self.keyframes is None:
            self.keyframes = Keyframes(self.path, self.fps)
        return self.keyframes

    def frame_to_read(self, target: int, low: int, high: int) -> tuple[int, int]:
        """The frame to read for ``target`` (itself, or the frame 16 after a keyframe near it,
        within ``low``..``high``, when an exact seek would decode more frames), and how far
        ahead of the current position grabbing is cheaper than seeking to it."""
        if self.exact:
            return target, SEEK_MIN_GAP
        if 0 <= target - self.position <= GRAB_MAX:
            return target, GRAB_MAX
        before, after = self.key_index().around(target, high - OPENCV_SEEK_BACK)
        if before is not None and after is not None and after - before <= OPENCV_SEEK_BACK:
            return target, GRAB_MAX  # keyframes this dense (all-intra): an exact seek decodes as few
        aligned = [key + OPENCV_SEEK_BACK for key in (before, after) if key is not None]
        if before is not None and 0 <= target - aligned[0] <= EXACT_SLACK:
            return target, GRAB_MAX  # its exact seek decodes at most EXACT_SLACK frames more
        nearest = min((f for f in aligned if low <= f <= high), key=lambda f: abs(f - target), default=None)
        return (target, SEEK_MIN_GAP) if nearest is None else (nearest, GRAB_MAX)

    def decode(self, index: int, near: int) -> np.ndarray | None:
        """Frame ``index`` in BGR: grabbed up to when at most ``near`` frames ahead, else sought."""
        if not 0 <= index - self.position <= near:
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, index)
            self.position = index
        while self.position < index and self.capture.grab():
            self.position += 1
        ok = self.position == index and self.capture.grab()
        self.position = index + 1
        return self.capture.retrieve()[1] if ok else None

    def timestamp(self, index: int) -> float:
        """The decoded frame's own time (a variable frame rate makes it differ from index / fps);
        index / fps where the stream has no timestamps."""
        msec = self.capture.get(cv2.CAP_PROP_POS_MSEC)
        return msec / 1000 if msec > 0 or index == 0 else self.time_of(index)

    def close(self) -> None:
        self.capture.release()
        if self.keyframes is not None:
            self.keyframes.close()


class Keyframes:
    """Where a video's keyframes are, from a capture in OpenCV's demux-only mode
    (``CAP_PROP_FORMAT`` -1): it reads the packets, each flagged keyframe or not, and decodes
    none, so a look costs microseconds per packet. A seek in this mode lands on the keyframe at
    or before the target (OpenCV 5); the packets are read from there."""

    def __init__(self, path: str, fps: float):
        self.fps = fps
        self.capture = open_capture(path, [cv2.CAP_PROP_FORMAT, -1])

    def around(self, index: int, limit: int) -> tuple[int | None, int | None]:
        """The last keyframe at or before frame ``index`` and the first after it (None for one not
        found: none there, none before ``limit``, or a build without the demux-only mode)."""
        if not self.capture.isOpened() or not self.capture.set(cv2.CAP_PROP_POS_FRAMES, index):
            return None, None
        before = None
        for _ in range(MAX_KEY_SCAN):
            if not self.capture.grab():
                break
            frame = round(self.capture.get(cv2.CAP_PROP_POS_MSEC) * self.fps / 1000)
            if frame > max(index, limit):
                break
            if self.capture.get(cv2.CAP_PROP_LRF_HAS_KEY_FRAME):
                if frame > index:
                    return before, frame
                before = frame
        return before, None

    def close(self) -> None:
        self.capture.release()


def open_capture(path: str, params: list[int] | None = None, keyframes_only: bool = False) -> cv2.VideoCapture:
    """A capture through FFmpeg; ``keyframes_only``: one whose decoder skips every frame but the
    keyframes (see ``CAPTURE_OPTIONS``), the user's own options kept before ours."""
    with _CAPTURE_OPTIONS_LOCK:
        users = os.environ.get(CAPTURE_OPTIONS)
        if keyframes_only:
            os.environ[CAPTURE_OPTIONS] = f"{users}|{KEYFRAME_ONLY}" if users else KEYFRAME_ONLY
        try:
            return cv2.VideoCapture(path, cv2.CAP_FFMPEG, params or [])
        finally:
            if keyframes_only and users is None:
                del os.environ[CAPTURE_OPTIONS]
            elif keyframes_only:
                os.environ[CAPTURE_OPTIONS] = users


def sampling_windows(targets: list[int], frame_count: int) -> list[tuple[int, int]]:
    """For each target, the frames nearer to it than to its neighbours (a lone target: the whole
    video; the first and last: as far out as the next and previous are): a frame read in place
    of a target stays in its window, so the frames keep the plan's spread and order."""
    if len(targets) == 1:
        return [(0, frame_count - 1)]
    gaps = np.diff(targets)
    lows = [max(0, math.ceil(targets[0] - gaps[0] / 2))] + [math.floor(t + g / 2) + 1 for t, g in zip(targets, gaps)]
    highs = [low - 1 for low in lows[1:]] + [min(frame_count - 1, math.floor(targets[-1] + gaps[-1] / 2))]
    return list(zip(lows, highs))


class PillowFrames:
    """Frames of an animated GIF or WebP through Pillow, each held for its own duration."""

    def __init__(self, path: str, label: str, container: str):
        self.label = label
        with contextlib.ExitStack() as opened:  # the file is closed unless the reader is made
            try:
                self.image = opened.enter_context(Image.open(path))
                check_pixels(self.image, label, DEFAULT_MAX_PIXELS)
                # WebP sets a frame's duration when the frame is loaded: one pass over the frames.
                durations = [load_frame(frame).info.get("duration", 0) or 0
                             for frame in ImageSequence.Iterator(self.image)]
            except ImageLoadError:
                raise
            except Exception as exc:  # noqa: BLE001 - Pillow raises many types for a damaged file
                raise ImageLoadError(label, f"cannot read this {container} animation: truncated or corrupt "
                                            f"({str(exc) or type(exc).__name__})") from None
            opened.pop_all()
        # Browsers show a frame of 0 ms (or none given) for 100 ms.
        durations = [d if d > 0 else 100 for d in durations]
        self.starts = np.concatenate([[0.0], np.cumsum(durations)[:-1]]) / 1000.0
        self.frame_count = len(durations)
        self.fps = self.frame_count / (sum(durations) / 1000.0)

    def time_of(self, index: int) -> float:
        return float(self.starts[index])

    def read(self, targets: list[int]) -> Iterator[tuple[int, float, np.ndarray]]:
        for index in targets:
            try:
                self.image.seek(index)
                frame = np.asarray(to_rgb(self.image.copy()))
            except Exception as exc:  # noqa: BLE001
                raise unreadable_frame(self, index, f" ({exc})") from None
            yield index, self.time_of(index), frame

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
def open_frames(source, label: str, exact: bool = False):
    """The frame reader for a video path or bytes (``exact``: frame-exact reads, see
    ``CvFrames``); ``ImageLoadError`` naming ``label`` when it is empty, not a video, or cannot
    be read."""
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
            reader = open_reader(path, label, container, exact)
        except cv2.error as exc:
            raise ImageLoadError(label, f"cannot read this {container} file ({str(exc).splitlines()[0]})") from None
        try:
            yield reader
        finally:
            reader.close()


def open_reader(path: str, label: str, container: str, exact: bool = False) -> CvFrames | PillowFrames:
    if container not in ("GIF", "WebP"):
        return CvFrames(path, label, container, exact)
    with contextlib.suppress(ImageLoadError):
        reader = CvFrames(path, label, container, exact)
        try:
            # The FFmpeg in OpenCV's wheel opens an animated WebP but decodes no frame of it.
            next(reader.read([0]))
            return reader
        except ImageLoadError:
            reader.close()
    return PillowFrames(path, label, container)


# ------------------------------------------------------------------------------ classifying


def classify_video(clf, source, *, name: str | None = None, frames: int = DEFAULT_FRAMES,
                   every: float | None = None, exact_frames: bool = False,
                   thumbnails: bool = False, max_frames: int | None = None) -> VideoPrediction:
    """``Classifier.predict_video`` for ``clf``, a ``Classifier``: see there."""
    check_sampling(frames, every)
    label = name or str(source if not isinstance(source, BYTES_TYPES) else "<bytes>")
    with open_frames(source, label, exact_frames) as reader:
        count = every_count(reader.frame_count, reader.fps, every) if every else 0
        if max_frames is not None and count > max_frames:
            raise ImageLoadError(label, f"one frame every {every:g} s is {count} frames of this "
                                        f"{reader.frame_count / reader.fps:.0f}-second video, over the limit of "
                                        f"{max_frames}: ask for a longer interval")
        plan = frame_plan(reader.frame_count, reader.fps, frames, every)
        # Each frame is cropped as soon as it is decoded, and the model takes a batch of crops
        # at a time: one full-size frame and one batch of crops are all a film holds in memory.
        crops = ((index, time_s, to_crop(rgb, clf.image_size, clf.crop_pct, name=label))
                 for index, time_s, rgb in reader.read(plan))
        per_frame = []
        while batch := list(itertools.islice(crops, clf.batch_size)):
            probs = clf.run(np.stack([clf.model_input(crop) for _, _, crop in batch]))
            for (index, time_s, crop), p in zip(batch, probs):
                per_frame.append(FramePrediction(**vars(clf.to_prediction(label, p)), index=index,
                                                 time_s=round(time_s, 3),
                                                 thumbnail=thumbnail(crop) if thumbnails else None))
        duration = reader.frame_count / reader.fps
    return summarise(label, per_frame, clf.classes, clf.min_confidence, duration)


def check_sampling(frames: int, every: float | None) -> None:
    if every is not None and not (0 < every < math.inf):
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
