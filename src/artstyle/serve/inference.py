"""Inference off the event loop: uploads are decoded on a thread pool sized to the cores, and
the model runs on the classifier's streams (one thread each, as in ``predict``): whenever a
stream is free, it takes every image that is waiting at that moment as one batch
(micro-batching: no added wait when idle; under load, the images of concurrent requests share
a model call). ONNX Runtime, Pillow and numpy release the GIL, so the event loop stays free to
accept and parse other requests meanwhile.
"""

from __future__ import annotations

import asyncio
import io
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image

from ..infer import Classifier, VideoPrediction
from ..images import open_image, open_pixels, plain_jpeg_size
from ..preprocess import to_crop

# EXIF orientations that turn the stored image by 90 degrees: the upright size swaps w and h.
TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}


@dataclass
class Decoded:
    array: np.ndarray  # the model's input for one image (uint8 HWC pixels, or float32 CHW)
    width: int  # upright size of the upload, as a viewer shows it
    height: int
    image: Image.Image | None = None  # kept only for explanations, which draw on it


@dataclass
class Job:
    array: np.ndarray
    future: asyncio.Future


class InferenceService:
    def __init__(self, classifier: Classifier, *, threads: int, max_batch: int, max_pixels: int):
        self.classifier = classifier
        self.max_batch = max(1, max_batch)
        self.max_pixels = max_pixels
        self.decode_pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="artstyle-decode")
        # One thread per stream: up to that many batches in the model at once.
        self.streams = classifier.streams
        self.model_threads = ThreadPoolExecutor(max_workers=self.streams, thread_name_prefix="artstyle-model")
        self.queue: asyncio.Queue[Job] | None = None
        self.workers: list[asyncio.Task] = []  # one batcher per stream, all taking from one queue
        self.batch_sizes: deque[int] = deque(maxlen=1000)  # recent model calls' sizes, for /healthz

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.workers = [asyncio.create_task(self.run_batches(), name=f"artstyle-batcher-{i}")
                        for i in range(self.streams)]

    def running(self) -> bool:
        """Whether every stream's batcher is up (a crashed one would leave requests waiting)."""
        return bool(self.workers) and not any(w.done() for w in self.workers)

    async def stop(self) -> None:
        for worker in self.workers:
            worker.cancel()
        await asyncio.gather(*self.workers, return_exceptions=True)
        self.decode_pool.shutdown(wait=False, cancel_futures=True)
        self.model_threads.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ per request

    async def decode(self, data: bytes, name: str, keep_image: bool = False) -> Decoded:
        """Raises ``ImageLoadError`` (with the reason) for anything that is not a usable image."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.decode_pool, self.decode_sync, data, name, keep_image)

    async def classify_video(self, data: bytes, name: str, sampling: dict) -> VideoPrediction:
        """A video upload classified whole on a decode thread (its frames in batches of their
        own; ``sampling``: ``predict_video``'s options); raises ``ImageLoadError`` for a file
        that is not a readable video or would need more frames than ``max_frames``."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.decode_pool, lambda: self.classifier.predict_video(data, name=name, thumbnails=True, **sampling))

    def decode_sync(self, data: bytes, name: str, keep_image: bool = False) -> Decoded:
        clf = self.classifier
        # An explanation draws on a PIL image; a plain prediction takes the faster array.
        opener = open_image if keep_image else open_pixels
        image = opener(data, name=name, max_pixels=self.max_pixels, draft_size=clf.draft_size)
        width, height = upright_size(data)
        array = clf.model_input(to_crop(image, clf.image_size, clf.crop_pct, name=name))
        return Decoded(array, width, height, image if keep_image else None)

    async def probabilities(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """One probability vector per array; the arrays join whatever batch runs next."""
        loop = asyncio.get_running_loop()
        jobs = [Job(a, loop.create_future()) for a in arrays]
        for job in jobs:
            self.queue.put_nowait(job)
        return list(await asyncio.gather(*(job.future for job in jobs)))

    def batching(self) -> dict:
        """Whether micro-batching happens: the mean size of the recent model calls."""
        recent = list(self.batch_sizes)
        return {"max_batch": self.max_batch, "streams": self.streams,
                "recent_mean_batch": round(sum(recent) / len(recent), 2) if recent else 0}

    # ------------------------------------------------------------------ the batcher

    async def run_batches(self) -> None:
        """One of the streams: take every image waiting (up to ``max_batch``), run it, repeat."""
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self.next_batch()
            if not jobs:
                continue
            try:
                probs = await loop.run_in_executor(self.model_threads, self.classifier.run,
                                                   np.stack([j.array for j in jobs]))
            except Exception as exc:  # noqa: BLE001 - an ORT failure answers its requests, never stops the stream
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            for job, p in zip(jobs, probs):
                if not job.future.done():  # its request may have timed out meanwhile
                    job.future.set_result(p)
            self.batch_sizes.append(len(jobs))

    async def next_batch(self) -> list[Job]:
        """The first waiting image and every other one already queued, up to ``max_batch``;
        images of requests that gave up (timeout, disconnect) are dropped here."""
        jobs = [await self.queue.get()]
        while len(jobs) < self.max_batch and not self.queue.empty():
            jobs.append(self.queue.get_nowait())
        return [j for j in jobs if not j.future.cancelled()]


def upright_size(data: bytes) -> tuple[int, int]:
    """The size a viewer shows: the stored size, turned by the EXIF orientation (header only).
    A plain JPEG, shown as stored, takes its size from the header parse of the fast decode
    rather than from Pillow's, which is written in Python."""
    plain = plain_jpeg_size(data, max_pixels=None)
    if plain is not None:
        return plain
    with Image.open(io.BytesIO(data)) as img:
        width, height = img.size
        orientation = img.getexif().get(ExifTags.Base.Orientation)
    return (height, width) if orientation in TRANSPOSING_ORIENTATIONS else (width, height)
