"""The torch-free classifier: an exported ONNX model and its model card, run by ONNX Runtime.

Only onnxruntime, numpy, Pillow, simplejpeg and OpenCV are imported (a test checks that torch
never is), so a user who only predicts installs no deep-learning framework. Images are decoded
and preprocessed on a thread pool (the decoders and OpenCV release the GIL) while ONNX Runtime
runs the previous batches.

The model runs several batches at once ("streams"), each call on its share of the threads,
rather than one batch at a time spread over every core: a convolution split across threads waits
at a barrier after every layer, and on two cores that wait costs a tenth or more of the model's
throughput (bench/bench_predict.py measures both ways). Each stream holds its own activations
(about 220 MB for the int8 default at batch 32, 430 MB in fp32: bench/bench_streams_memory.py), so the default stops at
``MAX_DEFAULT_STREAMS``.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from PIL import Image

from .._files import check_sha256, run_weights
from ..errors import ArtstyleError, ImageLoadError
from ..images import open_image, open_pixels, to_rgb
from ..preprocess import PREPROCESS_VERSION, decode_size, model_input, to_crop
from ..system import cpu_count, has_vnni, is_x86_64
from .prediction import Prediction, make_prediction
from .sources import DEFAULT_MAX_DOWNLOAD, DEFAULT_TIMEOUT, fetch_url, is_url
from .video import DEFAULT_FRAMES, check_sampling, classify_video, takes_video_path

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_MODEL = ASSETS / "default.onnx"
# An int8 export sits beside its fp32 model: model.onnx -> model.int8.onnx (each with its card).
INT8_SUFFIX = ".int8.onnx"
PRECISIONS = ("auto", "fp32", "int8")
DEFAULT_BATCH_SIZE = 32
# Streams by default, at most: past a few, more streams add memory (one set of activations each)
# faster than they add speed, since each call already has several threads.
MAX_DEFAULT_STREAMS = 4
CARD_FIELDS = ("classes", "image_size", "mean", "std", "onnx_sha256")
# Images per decode task: each task's hand-off between threads (a queue, a wake-up, a future) is
# shared by several small images.
DECODE_CHUNK = 8


def int8_path(onnx_path: str | os.PathLike) -> Path:
    """``model.onnx`` -> ``model.int8.onnx``, where ``artstyle export --int8`` writes it."""
    path = Path(onnx_path)
    return path if path.name.endswith(INT8_SUFFIX) else path.with_name(f"{path.stem}{INT8_SUFFIX}")


def fp32_path(onnx_path: Path) -> Path:
    """``model.int8.onnx`` -> ``model.onnx``; an fp32 path is returned as is."""
    name = onnx_path.name
    return onnx_path.with_name(name[:-len(INT8_SUFFIX)] + ".onnx") if name.endswith(INT8_SUFFIX) else onnx_path


def resolve_model(model: str | os.PathLike | None, precision: str = "auto") -> Path:
    """A model argument and a precision -> the .onnx file. ``None`` is the shipped default model.

    ``precision``: "auto" takes the file named (for the default model: the int8 one where it is
    as accurate as fp32 on this kind of CPU, see ``int8_validated_here``); "fp32" or "int8" take
    that precision's file of the same model, side by side."""
    if precision not in PRECISIONS:
        raise ArtstyleError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if model is None:
        if not DEFAULT_MODEL.is_file():
            raise ArtstyleError("no default model is installed; pass --model (an exported .onnx)")
        if precision == "auto":
            return auto_precision(DEFAULT_MODEL)
        return with_precision(DEFAULT_MODEL, precision)
    path = Path(model)
    if path.is_dir():
        if run_weights(path):
            raise ArtstyleError(
                f"{path} is a training run; export it first: artstyle export {path} -o model.onnx"
            )
        # model.int8.onnx is the same model as model.onnx: the folder holds one model.
        onnx_files = sorted(p for p in path.glob("*.onnx") if not p.name.endswith(INT8_SUFFIX))
        if len(onnx_files) != 1:
            raise ArtstyleError(f"{path}: expected one .onnx model in this folder, found {len(onnx_files)}")
        path = onnx_files[0]
    elif path.suffix == ".json":
        path = path.with_suffix(".onnx")
    elif path.suffix in (".safetensors", ".pt", ".pth"):
        raise ArtstyleError(f"{path} is a checkpoint; export it first: artstyle export {path} -o model.onnx")
    if not path.is_file():
        raise ArtstyleError(f"{path}: model not found")
    return path if precision == "auto" else with_precision(path, precision)


def int8_validated_here(int8_card: dict) -> tuple[bool, str]:
    """Whether an int8 model is as accurate as its fp32 model on this CPU, and why.

    Its export measured it against fp32 (``quantization.as_default``: the same answers on at
    least 99.5 % of held-out images, at most 0.3 points less accurate) on x86-64. 7-bit weights
    give the same answers on every x86-64 CPU: the 16-bit pair sums of CPUs without VNNI cannot
    saturate. 8-bit weights do only where the sums are 32-bit (VNNI). Other architectures run
    other kernels, which nobody measured."""
    quantization = int8_card.get("quantization", {})
    if not quantization.get("as_default", {}).get("met"):
        return False, "its export measured it less accurate than fp32"
    if not is_x86_64():
        return False, "int8 accuracy is measured on x86-64 only"
    if quantization.get("reduce_range"):
        return True, "7-bit weights: the same answers on every x86-64 CPU"
    if has_vnni():
        return True, "8-bit weights on a CPU with VNNI"
    return False, "8-bit weights may saturate on a CPU without VNNI"


def auto_precision(fp32_model: Path) -> Path:
    """``precision="auto"`` for the shipped model: int8 where it is as accurate as fp32 here."""
    int8 = int8_path(fp32_model)
    if not int8.is_file():
        return fp32_model
    validated, why = int8_validated_here(read_card(int8))
    log_once(f"precision auto: {'int8' if validated else 'fp32'} ({why})")
    return int8 if validated else fp32_model


@functools.cache
def log_once(message: str) -> None:
    """A debug line, once per process however many times the choice is made."""
    logging.getLogger("artstyle").debug(message)


def with_precision(path: Path, precision: str) -> Path:
    wanted = int8_path(path) if precision == "int8" else fp32_path(path)
    if not wanted.is_file():
        if precision == "int8":
            raise ArtstyleError(f"{path}: no int8 model beside it ({wanted.name}); "
                                f"make one with: artstyle export RUN -o {fp32_path(path).name} --int8")
        raise ArtstyleError(f"{path}: its fp32 model {wanted.name} is not beside it")
    return wanted


def read_card(onnx_path: Path) -> dict:
    card_path = onnx_path.with_suffix(".json")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtstyleError(f"{onnx_path}: its model card {card_path.name} is missing; re-export the model") from None
    except (OSError, ValueError) as exc:
        raise ArtstyleError(f"{card_path}: unreadable model card ({exc})") from None
    missing = [k for k in CARD_FIELDS if k not in card]
    if missing:
        raise ArtstyleError(f"{card_path}: not an artstyle model card (missing {', '.join(missing)})")
    return card


def read_model_bytes(onnx_path: Path) -> bytes:
    try:
        return onnx_path.read_bytes()
    except OSError as exc:
        raise ArtstyleError(f"{onnx_path}: cannot read the model ({exc.strerror or exc})") from None


def create_session(model_bytes: bytes, onnx_path: Path, threads: int | None):
    """An ONNX Runtime session whose every call runs on ``threads`` threads (default: all CPUs)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or cpu_count()
    options.inter_op_num_threads = 1  # one chain of convolutions: nothing to run side by side
    # Spinning threads would take CPU from the decode workers between batches.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises its own types for any bad model
        raise ArtstyleError(f"{onnx_path}: ONNX Runtime cannot load this model ({str(exc).splitlines()[0]})") from None


class Classifier:
    """An exported artstyle model, ready to predict. Create it with ``artstyle.load()``."""

    def __init__(self, session, card: dict, path: Path, *, batch_size: int = DEFAULT_BATCH_SIZE,
                 workers: int | None = None, streams: int = 1, url_timeout: float = DEFAULT_TIMEOUT,
                 max_download: int = DEFAULT_MAX_DOWNLOAD, min_confidence: float = 0.0,
                 allow_private_urls: bool = False):
        if not 0.0 <= min_confidence <= 1.0:
            raise ArtstyleError(f"min_confidence must be between 0 and 1, got {min_confidence}")
        self.session = session
        self.card = card
        self.path = path
        self.classes: list[str] = list(card["classes"])
        self.image_size = int(card["image_size"])
        self.mean, self.std = card["mean"], card["std"]
        self.crop_pct = float(card.get("crop_pct", 1.0))
        self.batch_size = batch_size
        self.workers = workers or cpu_count()
        self.streams = max(1, streams)
        self.url_timeout = url_timeout
        self.max_download = max_download
        # The card's probabilities are temperature-calibrated, so a threshold means what it says.
        self.min_confidence = min_confidence
        self.allow_private_urls = allow_private_urls
        self.input_name = session.get_inputs()[0].name
        # Exports since PREPROCESS_VERSION 2 take uint8 NHWC pixels and normalise inside the graph;
        # older ones (and `export --float-input`) take normalised float32 NCHW.
        self.pixel_input = takes_pixels(session)
        warn_if_older_preprocessing(card, path)
        # JPEGs decode at the smallest power-of-two reduction that still covers the resize.
        self.draft_size = decode_size(self.image_size, self.crop_pct)

    def __repr__(self) -> str:
        return (f"Classifier({self.path.name}, classes={self.classes}, image_size={self.image_size}, "
                f"precision={self.precision})")

    @property
    def precision(self) -> str:
        return self.card.get("precision", "fp32")

    # ------------------------------------------------------------------ single inputs

    def load_image(self, source, name: str | None = None) -> Image.Image:
        """A path, URL, bytes, binary file or PIL image -> upright RGB image."""
        return load_any(source, name, draft_size=self.draft_size, url_timeout=self.url_timeout,
                        max_download=self.max_download, allow_private_urls=self.allow_private_urls)

    def to_array(self, source, name: str | None = None) -> np.ndarray:
        """One input, decoded and preprocessed exactly as at export: the model's input for one
        image (uint8 HWC pixels, or float32 CHW for a float-input export)."""
        return self.model_input(self.to_crop(source, name))

    def model_input(self, pixels: np.ndarray) -> np.ndarray:
        """``to_crop``'s uint8 HWC pixels -> what this model takes for one image."""
        return model_input(pixels, self.mean, self.std, self.pixel_input)

    def to_crop(self, source, name: str | None = None) -> np.ndarray:
        """One input decoded, cropped and resized to the model's input size, as uint8 HWC RGB:
        all of ``to_array`` but a float model's normalisation, which the Ray engine runs in
        decode tasks."""
        return load_crop(source, name, image_size=self.image_size, crop_pct=self.crop_pct,
                         draft_size=self.draft_size, url_timeout=self.url_timeout,
                         max_download=self.max_download, allow_private_urls=self.allow_private_urls)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities for a batch of ``to_array`` inputs, stacked."""
        return self.session.run(None, {self.input_name: batch})[0]

    # ------------------------------------------------------------------ the public API

    def predict(self, inputs, *, errors: str = "raise", frames: int = DEFAULT_FRAMES, every: float | None = None,
                exact_frames: bool = False):
        """Classify one input or many.

        One input (path, URL, bytes, binary file or PIL image) -> ``Prediction``; a list or other
        iterable -> list of ``Prediction`` in the same order. ``errors="raise"`` raises
        ``ImageLoadError`` for an unreadable input; ``errors="return"`` returns it as a
        ``Prediction`` whose ``error`` says why. A video (a path or bytes, recognised by its
        content) gets a ``VideoPrediction`` from ``predict_video(frames=, every=, exact_frames=)``.
        """
        if errors not in ("raise", "return"):
            raise ValueError("errors must be 'raise' or 'return'")
        if is_single(inputs):
            return next(self.predict_iter([inputs], errors=errors, workers=1, frames=frames, every=every,
                                          exact_frames=exact_frames))
        return list(self.predict_iter(inputs, errors=errors, frames=frames, every=every, exact_frames=exact_frames))

    def predict_video(self, source, *, frames: int = DEFAULT_FRAMES, every: float | None = None,
                      exact_frames: bool = False, name: str | None = None, thumbnails: bool = False,
                      max_frames: int | None = None):
        """Classify a video file (path or bytes: MP4, MOV, MKV, WebM, AVI, animated GIF or WebP)
        -> ``VideoPrediction``: the mean of the calibrated probabilities of ``frames`` frames
        spread over the middle 90 % of the video, or of one frame every ``every`` seconds; the
        share of frames each class wins; and ``per_frame``, each frame's own prediction with its
        time (and a small JPEG data URL of the model's view with ``thumbnails``). A planned frame
        is read as the nearest one that decodes from a keyframe alone, unless ``exact_frames``
        (several times slower on a film: frame-exact seeks decode from the keyframe before).
        Raises ``ImageLoadError`` for a file that is not a readable video, or one of which
        ``every`` would sample more than ``max_frames`` frames."""
        return classify_video(self, source, name=name, frames=frames, every=every, exact_frames=exact_frames,
                              thumbnails=thumbnails, max_frames=max_frames)

    def predict_iter(self, inputs: Iterable, *, errors: str = "return", batch_size: int | None = None,
                     workers: int | None = None, frames: int = DEFAULT_FRAMES,
                     every: float | None = None, exact_frames: bool = False) -> Iterator[Prediction]:
        """Predictions as they are produced, in input order. Decoding runs ahead on a thread
        pool of ``workers``, and up to ``streams`` batches run through the model at once.
        A video is classified whole on a decode thread (``predict_video(frames=, every=, exact_frames=)``).
        With ``errors="raise"``, the predictions of the batches already in the model are
        yielded before the bad input's ``ImageLoadError`` is raised."""
        check_sampling(frames, every)
        batch_size = batch_size or self.batch_size
        sizes = batch_sizes(inputs, batch_size, self.streams)
        decoder = ThreadPoolExecutor(max_workers=workers or self.workers, thread_name_prefix="artstyle-decode")
        model = ThreadPoolExecutor(max_workers=self.streams, thread_name_prefix="artstyle-model")
        running: deque = deque()
        try:
            try:
                for ready in self.decoded_batches(inputs, sizes, errors, decoder, ahead=2 * batch_size,
                                                  sampling={"frames": frames, "every": every,
                                                            "exact_frames": exact_frames}):
                    running.append((ready, model.submit(self.run_ready, ready)))
                    # A batch queued behind each stream, so a stream that finishes starts the next at
                    # once, even while the oldest batch, whose answers come out first, is still running.
                    if len(running) > 2 * self.streams:
                        yield from self.finish(*running.popleft())
            except ImageLoadError:
                # errors="raise": what is already computed is not lost; then the bad input's error.
                while running:
                    yield from self.finish(*running.popleft())
                raise
            while running:
                yield from self.finish(*running.popleft())
        finally:
            # An error, an interrupt or a consumer that stops early: drop the work queued ahead.
            decoder.shutdown(wait=True, cancel_futures=True)
            model.shutdown(wait=True, cancel_futures=True)

    def decoded_batches(self, inputs: Iterable, sizes: Iterator[int], errors: str,
                        pool: ThreadPoolExecutor, ahead: int, sampling: dict | None = None) -> Iterator[list]:
        """Lists of (name, model input, video's Prediction or ImageLoadError), in input order,
        with as many decoded arrays as the next of ``sizes`` says; ``ahead`` images are being
        decoded ahead at any time, ``DECODE_CHUNK`` to a task; ``sampling`` is the videos'
        ``predict_video`` options."""
        batch_size = next(sizes)
        numbered = enumerate(inputs)
        chunks = iter(lambda: list(itertools.islice(numbered, DECODE_CHUNK)), [])
        sampling = sampling or {}
        pending = deque(pool.submit(self.decode_chunk, chunk, sampling)
                        for chunk in itertools.islice(chunks, -(-ahead // DECODE_CHUNK)))
        ready, decoded = [], 0
        while pending:
            results = pending.popleft().result()
            pending.extend(pool.submit(self.decode_chunk, chunk, sampling) for chunk in itertools.islice(chunks, 1))
            for name, item in results:
                if isinstance(item, ImageLoadError) and errors == "raise":
                    raise item
                ready.append((name, item))
                decoded += isinstance(item, np.ndarray)
                if decoded == batch_size:
                    yield ready
                    ready, decoded, batch_size = [], 0, next(sizes)
        if ready:
            yield ready

    def decode_chunk(self, chunk: list, sampling: dict | None = None) -> list:
        """(name, model input, video's Prediction or ImageLoadError) for each (index, source) of
        ``chunk``."""
        results = []
        for index, source in chunk:
            try:
                if takes_video_path(source):
                    item = self.predict_video(source, name=describe(source, index), **(sampling or {}))
                else:
                    item = self.to_array(source, name_for(source, index))
            except ImageLoadError as exc:
                item = exc
            results.append((describe(source, index), item))
        return results

    def run_ready(self, ready: list) -> np.ndarray | None:
        """The model's probabilities for the decoded arrays of a ``decoded_batches`` list."""
        arrays = [item for _, item in ready if isinstance(item, np.ndarray)]
        return self.run(np.stack(arrays)) if arrays else None

    def finish(self, ready: list, probs_future) -> Iterator[Prediction]:
        """Every entry of ``ready`` as a Prediction, in order, once its batch's model call is done."""
        probs = iter(()) if (result := probs_future.result()) is None else iter(result)
        for name, item in ready:
            if isinstance(item, ImageLoadError):
                yield Prediction(name, error=item.reason)
            elif isinstance(item, Prediction):  # a video, classified whole
                yield item
            else:
                yield self.to_prediction(name, next(probs))

    def to_prediction(self, source: str, probs: np.ndarray) -> Prediction:
        return make_prediction(source, probs, self.classes, self.min_confidence)


def batch_sizes(inputs, batch_size: int, streams: int) -> Iterator[int]:
    """The size of each batch, in order, planned so that no stream waits while another works.

    For inputs of known length:
    - **The start:** the first round (one batch per stream) is a quarter of ``batch_size``, so
      the first stream starts after 8 images are decoded, not 32, and the second soon after.
    - **The end:** so are the last two rounds, so the streams finish within a small batch of
      each other; with full batches, one stream ran the last alone while the other's core sat
      idle.
    - **Between them:** whole rounds of batches sized within one image of each other (``even``).
    - **A short list** (up to four small rounds): one round, or a few, of even batches (ten images
      on two streams: two batches of five, side by side).
    On a CPU the model's cost per image hardly depends on the batch size, so small batches
    cost nothing. An iterator of unknown length gets ``batch_size`` throughout."""
    if not hasattr(inputs, "__len__"):
        return itertools.repeat(batch_size)
    count = len(inputs)
    edge = max(1, batch_size // 4)
    if count <= 4 * streams * edge:
        plan = even(count, batch_size, streams)
    else:
        plan = [edge] * streams + even(count - 3 * streams * edge, batch_size, streams) + [edge] * (2 * streams)
    # An unreadable input does not count towards its batch, which takes the next inputs instead,
    # so the plan is never all used; batch_size follows it all the same, so sizes cannot run out.
    return itertools.chain(plan, itertools.repeat(batch_size))


def even(count: int, batch_size: int, streams: int) -> list[int]:
    """``count`` images in whole rounds of one batch per stream, at most ``batch_size`` each,
    sized within one image of each other (500 at 32 on two streams: 16 batches of 31 or 32).
    No batch of 0 when there are fewer images than streams."""
    batches = streams * -(-max(1, count) // (streams * batch_size))
    small, extra = divmod(max(1, count), batches)
    return [size for size in [small + 1] * extra + [small] * (batches - extra) if size]


def takes_pixels(session) -> bool:
    """Whether an ONNX Runtime session's model takes uint8 pixels (normalising them itself)."""
    return session.get_inputs()[0].type == "tensor(uint8)"


def warn_if_older_preprocessing(card: dict, path: Path) -> None:
    """A model exported before PREPROCESS_VERSION 2 was validated on Pillow's resize and now sees
    OpenCV's: within a rounding level on enlarged images, area-averaged instead of Pillow's
    triangle filter on shrunk ones. Measured on the previous default model, 0.9751 accuracy in
    distribution either way; still worth a re-export."""
    version = (card.get("preprocess") or {}).get("version", 1)
    if version < PREPROCESS_VERSION:
        logging.getLogger("artstyle").warning(
            f"{path.name} was exported for preprocessing version {version} (Pillow's resize); it now gets "
            f"version {PREPROCESS_VERSION}'s pixels (OpenCV's), which may move its answers slightly. "
            f"Re-export it to validate it on them.")


def load_any(source, name: str | None = None, *, draft_size: int | None = None,
             url_timeout: float = DEFAULT_TIMEOUT, max_download: int = DEFAULT_MAX_DOWNLOAD,
             allow_private_urls: bool = False, opener=open_image) -> Image.Image | np.ndarray:
    """A path, http(s) URL, bytes, binary file or PIL image -> upright RGB image (a PIL image;
    with ``opener=open_pixels``, a uint8 HWC array where that is faster to make).
    Raises ``ImageLoadError`` naming the input."""
    if isinstance(source, Image.Image):
        return to_rgb(source)
    if is_url(source):
        data = fetch_url(source, timeout=url_timeout, max_bytes=max_download, allow_private=allow_private_urls)
        return opener(data, name=source, draft_size=draft_size)
    return opener(source, name=name, draft_size=draft_size)


def load_crop(source, name: str | None = None, *, image_size: int, crop_pct: float = 1.0,
              draft_size: int | None = None, url_timeout: float = DEFAULT_TIMEOUT,
              max_download: int = DEFAULT_MAX_DOWNLOAD, allow_private_urls: bool = False) -> np.ndarray:
    """A path, URL, bytes, binary file or PIL image -> the RGB ``image_size`` square the model
    sees, uint8 HWC. Raises ``ImageLoadError`` naming the input."""
    img = load_any(source, name, draft_size=draft_size, url_timeout=url_timeout, max_download=max_download,
                   allow_private_urls=allow_private_urls, opener=open_pixels)
    return to_crop(img, image_size, crop_pct, name=name or str(source))


def is_single(inputs) -> bool:
    return isinstance(inputs, (str, os.PathLike, bytes, bytearray, memoryview, Image.Image)) or hasattr(inputs, "read")


def name_for(source, index: int) -> str | None:
    """The name that error messages use for inputs that are not paths."""
    if isinstance(source, (str, os.PathLike)):
        return None
    return describe(source, index)


def describe(source, index: int) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, Image.Image):
        return getattr(source, "filename", "") or f"<image {index}>"
    return getattr(source, "name", None) or f"<bytes {index}>"


def load(model: str | os.PathLike | None = None, *, precision: str = "auto", threads: int | None = None,
         streams: int | None = None, batch_size: int = DEFAULT_BATCH_SIZE, workers: int | None = None,
         url_timeout: float = DEFAULT_TIMEOUT,
         max_download: int = DEFAULT_MAX_DOWNLOAD, min_confidence: float = 0.0,
         allow_private_urls: bool = False) -> Classifier:
    """Load an exported model (``.onnx`` with its ``.json`` model card; default: the shipped
    model) after checking its sha256.

    ``precision``: "fp32" or "int8" load that version of the model (``model.onnx`` or the
    ``model.int8.onnx`` beside it, from ``artstyle export --int8``); "auto" loads the file
    named, and for the shipped model its int8 version when installed.

    ``threads``: ONNX Runtime threads in all (default: the CPUs this process may use);
    ``streams``: batches ``predict`` runs through the model at once, each call on
    ``threads // streams`` threads (default: ``default_streams(threads)``, one per thread up to
    four; 1 spreads each call over every thread, which suits code that calls ``run`` one batch
    at a time; each stream holds its own activations); ``workers``: decode threads;
    ``url_timeout`` (seconds, for each whole download) and ``max_download`` (bytes) apply to http(s) inputs, which may not reach loopback, private,
    link-local, multicast or reserved addresses unless ``allow_private_urls``.
    A prediction whose confidence is below ``min_confidence`` is labelled ``"uncertain"`` (its
    probabilities are kept), for users who filter data.
    """
    path = resolve_model(model, precision)
    card = read_card(path)
    # from_bytes checks the sha256: a truncated or tampered file fails with a clear message.
    return from_bytes(read_model_bytes(path), card, path, threads=threads, streams=streams, batch_size=batch_size,
                      workers=workers, url_timeout=url_timeout, max_download=max_download,
                      min_confidence=min_confidence, allow_private_urls=allow_private_urls)


def from_bytes(model_bytes: bytes, card: dict, path: Path, *, threads: int | None = None,
               streams: int | None = None, batch_size: int = DEFAULT_BATCH_SIZE, workers: int | None = None,
               url_timeout: float = DEFAULT_TIMEOUT, max_download: int = DEFAULT_MAX_DOWNLOAD,
               min_confidence: float = 0.0, allow_private_urls: bool = False) -> Classifier:
    """A classifier from model bytes already in memory (e.g. shipped to a Ray worker), checked
    against the card's sha256 here, where they are used."""
    check_sha256(model_bytes, card["onnx_sha256"], path, " - re-export it (or reinstall artstyle for the default model)")
    threads = threads or cpu_count()
    streams = streams or default_streams(threads)
    if streams > threads:
        raise ArtstyleError(f"streams ({streams}) cannot exceed threads ({threads}): each stream needs a thread")
    session = create_session(model_bytes, path, threads // streams)
    outputs = session.get_outputs()[0].shape
    if outputs and isinstance(outputs[-1], int) and outputs[-1] != len(card["classes"]):
        raise ArtstyleError(f"{path}: the model has {outputs[-1]} outputs but its card lists {len(card['classes'])} classes")
    return Classifier(session, card, path, batch_size=batch_size, workers=workers, streams=streams,
                      url_timeout=url_timeout, max_download=max_download, min_confidence=min_confidence,
                      allow_private_urls=allow_private_urls)


def default_streams(threads: int) -> int:
    """The largest number of streams, at most ``MAX_DEFAULT_STREAMS``, that shares ``threads``
    evenly (2 -> 2, 6 -> 3, 16 -> 4 of 4 threads each; 5 -> 1), so no thread sits idle and
    none is oversubscribed."""
    return max(n for n in range(1, min(threads, MAX_DEFAULT_STREAMS) + 1) if threads % n == 0)
