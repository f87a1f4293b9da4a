"""Scale out with Ray Data: the same predictions and scan manifests as the local engine, computed
across a Ray cluster (``pip install 'artstyle[ray]'``).

    >>> import ray, artstyle.ray
    >>> ds = ray.data.read_parquet("/mnt/shared/crawl.parquet")   # a ``path`` column: files or http(s) URLs
    >>> artstyle.ray.predict_dataset(ds).write_parquet("/mnt/shared/styles/")

Every node must see the files at the same paths (a shared file system) or fetch them by URL.

The pipeline is Ray Data's standard batch-inference pattern, reusing the torch-free predictor's
own functions so every row is what ``artstyle predict`` writes locally:

1. decode tasks (stateless, as many as there are free CPUs): file or URL -> the model-sized RGB
   crop, as uint8 (4x less object-store traffic than float32); a bad file becomes an ``error``;
2. an actor pool: one ONNX Runtime session per actor, created once when the actor starts, from
   model bytes that travel through the object store and are checked against the model card's
   sha256 on the worker; it runs the batch (normalising the crops first for a float-input export)
   and returns ``path, label, confidence, p_<class>..., error`` rows.

A dead actor is restarted and its batch retried by Ray (``max_restarts`` / ``max_task_retries``),
so every input still yields exactly one row.

Videos among the listed files go to a pool of their own, one video per task (``predict_videos``):
an actor decodes its sampled frames and runs them through its session, so a folder of films is
spread over the actors. Their rows join the images' in input order. A video among a manifest's
rows, which only the workers read, is recognised by its decode task as the local engine would
(by content, or its name) and classified whole by the actor that gets its batch; a run that
reads a manifest therefore carries the video columns. ``--per-frame`` records travel with the
rows (a ``per_frame`` column of JSON) and are written by the driver.

This module is ``artstyle.ray``; ``import ray`` below is the absolute import of Ray itself.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections import deque
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import ray

from .errors import ArtstyleError, ImageLoadError
from .images import DEFAULT_MAX_PIXELS, driver_pillow_limit, use_pillow_limit
from .infer.predictor import (DEFAULT_BATCH_SIZE, DEFAULT_FRAMES, Prediction, from_bytes, load_crop, read_card,
                              read_model_bytes, resolve_model)
from .infer.sources import DEFAULT_MAX_DOWNLOAD, DEFAULT_TIMEOUT, expand_inputs, is_url
from .infer.video import may_be_video, takes_video_path
from .infer.writers import frame_records, row_for

MANIFEST_SUFFIXES = (".csv", ".parquet")
# The column a manifest names its images by, in order of preference.
PATH_COLUMNS = ("path", "url")
# Bytes a decode task may need: the largest RGB image the loader accepts (DEFAULT_MAX_PIXELS).
DECODE_MEMORY = 3 * DEFAULT_MAX_PIXELS


# ------------------------------------------------------------------------------ cluster


def connect(address: str | None = None) -> None:
    """Join the cluster at ``address`` (``auto``, ``HOST:PORT`` or ``ray://HOST:10001``); without
    one, RAY_ADDRESS or else a local instance on this machine's CPUs. No-op when connected."""
    if ray.is_initialized():
        return
    try:
        ray.init(address=address, include_dashboard=False, logging_level="WARNING",
                 configure_logging=True, log_to_driver=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or os.environ.get("RAY_ADDRESS") or "a local instance"
        hint = ("; a cluster with token authentication also needs RAY_AUTH_MODE=token and its token "
                "(RAY_AUTH_TOKEN or ~/.ray/auth_token)" if address and "RAY_AUTH_MODE" not in os.environ else "")
        raise ArtstyleError(f"cannot connect to Ray at {where} ({str(exc).splitlines()[0]}){hint}") from None


# ------------------------------------------------------------------------------ inputs


def is_manifest(arg: str) -> bool:
    return not is_url(arg) and arg.lower().endswith(MANIFEST_SUFFIXES) and os.path.isfile(arg)


def read_inputs(args: Sequence[str], listed: list[str] | None = None) -> ray.data.Dataset:
    """Command-line inputs -> a dataset with ``path`` (as the user wrote it, the name results
    carry) and ``source`` (what a worker opens: an absolute path or a URL).

    Files, folders and globs are listed here, as the local engine does (or given as ``listed``);
    a manifest (CSV or Parquet with a ``path`` or ``url`` column) is read by Ray itself, in
    parallel, which is the way to feed millions of images."""
    listed = list_inputs(args) if listed is None else listed
    parts = [read_manifest(a) for a in args if is_manifest(a)]
    if listed:
        parts.insert(0, paths_dataset(listed))
    if not parts:
        raise ArtstyleError(f"no images or videos found in {' '.join(args)}")
    return parts[0] if len(parts) == 1 else parts[0].union(*parts[1:])


def list_inputs(args: Sequence[str]) -> list[str]:
    """The files, folders and globs among ``args``, listed (manifests are read by Ray)."""
    return expand_inputs([a for a in args if not is_manifest(a)])


def paths_dataset(paths: list[str]) -> ray.data.Dataset:
    return ray.data.from_items([{"path": p, "source": absolute(p)} for p in paths])


def split_videos(listed: list[str]) -> tuple[list[str], list[str]]:
    """(images, videos) of the listed inputs, as the local engine tells them apart."""
    videos = {p for p in listed if may_be_video(p) and takes_video_path(p)}
    return [p for p in listed if p not in videos], [p for p in listed if p in videos]


def absolute(path: str, cwd: str | None = None) -> str:
    """Workers do not share the driver's working directory: relative paths are resolved here."""
    return path if is_url(path) else os.path.join(cwd or os.getcwd(), path)


def read_manifest(path: str) -> ray.data.Dataset:
    try:
        ds = ray.data.read_parquet(path) if path.lower().endswith(".parquet") else ray.data.read_csv(path)
        names = ds.schema().names
    except Exception as exc:  # noqa: BLE001 - Arrow raises its own types for any malformed file
        raise ArtstyleError(f"{path}: not a readable manifest ({str(exc).splitlines()[0]})") from None
    column = next((c for c in PATH_COLUMNS if c in names), None)
    if column is None:
        raise ArtstyleError(f"{path}: a manifest needs a 'path' or 'url' column (it has {', '.join(names)})")
    cwd = os.getcwd()

    def with_source(batch: pa.Table) -> pa.Table:
        paths = [str(p) for p in batch.column(column).to_pylist()]
        return pa.table({"path": paths, "source": [absolute(p, cwd) for p in paths]})

    return ds.select_columns([column]).map_batches(with_source, batch_format="pyarrow")


# ------------------------------------------------------------------------------ model


def pack_model(model: str | os.PathLike | None, precision: str = "auto") -> dict:
    """The model file and its card, read once on the driver, for ``ray.put``."""
    path = resolve_model(model, precision)
    card = read_card(path)
    return {"bytes": read_model_bytes(path), "card": card, "name": path.name}


# ------------------------------------------------------------------------------ the two stages


def decode_batch(batch: dict, *, image_size: int, crop_pct: float, draft_size: int,
                 url_timeout: float, max_download: int, pillow_limit: int | None) -> dict:
    """Decode task: each ``source`` -> the model-sized uint8 crop; failures -> ``error``; a video
    (a manifest's row: the listed ones have their own pool) -> ``video`` set, for the actor."""
    use_pillow_limit(pillow_limit)
    names, sources = list(batch["path"]), list(batch.get("source", batch["path"]))
    pixels = np.zeros((len(names), image_size, image_size, 3), dtype=np.uint8)
    errors = [""] * len(names)
    videos = np.array([is_video_source(str(source)) for source in sources], dtype=bool)
    for i, (name, source) in enumerate(zip(names, sources)):
        if videos[i]:
            continue
        try:
            pixels[i] = load_crop(source, str(name), image_size=image_size, crop_pct=crop_pct,
                                  draft_size=draft_size, url_timeout=url_timeout, max_download=max_download)
        except ImageLoadError as exc:
            errors[i] = exc.reason
        except Exception as exc:  # noqa: BLE001 - a decoder bug on one odd file must not fail the job
            errors[i] = f"unexpected {type(exc).__name__}: {exc}"
    return {"path": np.array(names, dtype=object), "source": np.array(sources, dtype=object), "pixels": pixels,
            "error": np.array(errors, dtype=object), "video": videos}


def is_video_source(source: str) -> bool:
    """Whether the local engine would classify this file as a video (``split_videos``)."""
    return not is_url(source) and may_be_video(source) and takes_video_path(source)


def result_schema(classes: Iterable[str], video: bool = False, per_frame: bool = False) -> pa.Schema:
    """The columns of a result row, typed up front: a batch of failures only has no floats to
    infer a type from. ``video``: the video columns too (``writers.row_for``); ``per_frame``:
    a last column, each video's ``frame_records`` as JSON (empty for an image)."""
    videos = [("frames", pa.int64()), ("duration_s", pa.float64())] + [(f"share_{c}", pa.float64()) for c in classes]
    return pa.schema([("path", pa.string()), ("label", pa.string()), ("confidence", pa.float64())]
                     + [(f"p_{c}", pa.float64()) for c in classes] + (videos if video else [])
                     + [("error", pa.string())] + ([("per_frame", pa.string())] if per_frame else []))


def actor_classifier(model_ref: list, threads: int):
    """An actor's classifier: one ONNX Runtime session for its lifetime, built from the shipped
    model bytes after checking them against the card's sha256 here, on the worker."""
    model = ray.get(model_ref[0])  # wrapped in a list so that Ray hands over the reference
    # streams=1: Ray hands the actor one batch at a time; each call uses all its threads.
    return from_bytes(model["bytes"], model["card"], Path(model["name"]), threads=threads, streams=1)


class ResultActor:
    """What both actors share: the classifier, the rows' schema, and how a video is classified
    (``sampling``: ``predict_video``'s options; ``per_frame``: its frames' records too)."""

    def __init__(self, model_ref: list, threads: int, video: bool, sampling: dict | None, per_frame: bool):
        self.classifier = actor_classifier(model_ref, threads)
        self.video, self.sampling, self.per_frame = video, sampling or {}, per_frame
        self.schema = result_schema(self.classifier.classes, video, per_frame)

    def predict_video(self, source, name) -> Prediction:
        try:
            return self.classifier.predict_video(str(source), name=str(name), **self.sampling)
        except ImageLoadError as exc:
            return Prediction(str(name), error=exc.reason)

    def table(self, preds: list[Prediction]) -> pa.Table:
        rows = [row_for(pred, self.classifier.classes, video=self.video) for pred in preds]
        if self.per_frame:
            for row, pred in zip(rows, preds):
                row["per_frame"] = json.dumps(frame_records(pred)) if getattr(pred, "per_frame", None) else ""
        return pa.Table.from_pylist(rows, schema=self.schema)


class Predictor(ResultActor):
    """The actor of images: runs the decode tasks' crops through its session, and classifies
    whole the videos that a manifest's rows named."""

    def __init__(self, model_ref: list, threads: int, video: bool = False, sampling: dict | None = None,
                 per_frame: bool = False):
        super().__init__(model_ref, threads, video, sampling, per_frame)

    def __call__(self, batch: dict) -> pa.Table:
        clf = self.classifier
        videos = batch.get("video", np.zeros(len(batch["path"]), dtype=bool))
        ok = [i for i, e in enumerate(batch["error"]) if not e and not videos[i]]
        probs = clf.run(np.stack([clf.model_input(batch["pixels"][i]) for i in ok])) if ok else []
        answers = dict(zip(ok, probs))
        preds = [self.predict_video(batch["source"][i], name) if videos[i]
                 else clf.to_prediction(str(name), answers[i]) if i in answers
                 else Prediction(str(name), error=str(batch["error"][i]))
                 for i, name in enumerate(batch["path"])]
        return self.table(preds)


class VideoPredictor(ResultActor):
    """The actor of videos: each task is one video, decoded and classified whole here."""

    def __init__(self, model_ref: list, threads: int, sampling: dict, per_frame: bool = False):
        super().__init__(model_ref, threads, True, sampling, per_frame)

    def __call__(self, batch: dict) -> pa.Table:
        return self.table([self.predict_video(source, name) for name, source in zip(batch["path"], batch["source"])])


def predict_videos(paths: list[str], model: str | os.PathLike | None = None, *, actors: int = 1,
                   cpus_per_actor: float = 1.0, threads: int | None = None, frames: int = DEFAULT_FRAMES,
                   every: float | None = None, exact_frames: bool = False, per_frame: bool = False,
                   runtime_env: dict | None = None, precision: str = "auto") -> ray.data.Dataset:
    """Classify video files, one video per task on a pool of ``actors`` (the local
    ``predict_video`` rows, with the video columns; ``per_frame``: and a ``per_frame`` column,
    the frames' records as JSON), in the order given."""
    sampling = {"frames": frames, "every": every, "exact_frames": exact_frames}
    model_ref = ray.put(pack_model(model, precision))
    return paths_dataset(paths).map_batches(
        VideoPredictor, batch_size=1, batch_format="numpy", num_cpus=cpus_per_actor,
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, min(actors, len(paths)))),
        fn_constructor_args=([model_ref], threads or max(1, round(cpus_per_actor)), sampling, per_frame),
        runtime_env=runtime_env,
    )


def predict_dataset(ds: ray.data.Dataset, model: str | os.PathLike | None = None, *,
                    actors: int | tuple[int, int] = 1, batch_size: int = DEFAULT_BATCH_SIZE,
                    cpus_per_actor: float = 1.0, threads: int | None = None, decode_cpus: float = 1.0,
                    url_timeout: float = DEFAULT_TIMEOUT, max_download: int = DEFAULT_MAX_DOWNLOAD,
                    runtime_env: dict | None = None, precision: str = "auto",
                    video_columns: bool = False, sampling: dict | None = None,
                    per_frame: bool = False) -> ray.data.Dataset:
    """Classify every row of ``ds`` (a ``path`` column; optionally ``source``, what to open when
    it differs from the name to report) and return a lazy dataset of result rows:
    ``path, label, confidence, p_<class>..., error`` (the local ``predict`` CSV columns).

    ``actors``: model replicas, or ``(min, max)`` to let Ray Data autoscale the pool;
    ``cpus_per_actor``: CPUs each reserves (fractions allowed), ``threads`` its ONNX Runtime
    threads (default: that many, at least 1); ``decode_cpus``: CPUs per decode task;
    ``runtime_env``: for the actors (e.g. ``{"pip": ["artstyle[ray]"]}`` on a bare cluster);
    ``precision``: as for ``artstyle.load`` ("auto": the shipped model's int8 version);
    ``video_columns``: the rows carry the video columns, for a run that has videos too (a
    row's video is classified whole by its actor, with ``sampling``, ``predict_video``'s
    options; ``per_frame``: and a ``per_frame`` column, its frames' records as JSON)."""
    model_data = pack_model(model, precision)
    card = model_data["card"]
    image_size, crop_pct = int(card["image_size"]), float(card.get("crop_pct", 1.0))
    model_ref = ray.put(model_data)  # fetched once per node's object store, not once per batch
    # The memory reservation is for the largest image the decoder accepts. Being a remote
    # argument the actors lack, it also keeps Ray Data from fusing decoding into the actors
    # (it fuses maps with equal arguments), where it would stop overlapping with inference.
    decoded = ds.map_batches(
        decode_batch, batch_size=batch_size, batch_format="numpy", num_cpus=decode_cpus, memory=DECODE_MEMORY,
        fn_kwargs=dict(image_size=image_size, crop_pct=crop_pct, draft_size=int(np.ceil(image_size / crop_pct)),
                       url_timeout=url_timeout, max_download=max_download, pillow_limit=driver_pillow_limit()),
    )
    low, high = actors if isinstance(actors, tuple) else (actors, actors)
    # Ray Data's actor pools restart a dead actor and retry its batch (max_restarts=-1,
    # max_task_retries=-1 by default), which is what keeps every row exactly once.
    return decoded.map_batches(
        Predictor, batch_size=batch_size, batch_format="numpy", num_cpus=cpus_per_actor,
        compute=ray.data.ActorPoolStrategy(min_size=low, max_size=high),
        fn_constructor_args=([model_ref], threads or max(1, round(cpus_per_actor)), video_columns, sampling,
                             per_frame),
        runtime_env=runtime_env,
    )


# ------------------------------------------------------------------------------ the command


def output_kind(output: str | None) -> str:
    """``csv`` (a file, or stdout without -o) or ``parquet`` (a folder of part files)."""
    if not output or output.lower().endswith(".csv"):
        return "csv"
    suffix = os.path.splitext(output.rstrip("/"))[1].lower()
    if suffix not in ("", ".parquet"):
        raise ArtstyleError(f"{output}: --engine ray writes a .csv file or a Parquet folder (no suffix or .parquet)")
    if os.path.isdir(output) and os.listdir(output):
        raise ArtstyleError(f"{output}: folder is not empty; give a new folder for the Parquet part files")
    return "parquet"


def predict_files(inputs: Sequence[str], output: str | None, model: str | os.PathLike | None = None, *,
                  progress: bool = False, on_failure=None, stdout=None, frames: int = DEFAULT_FRAMES,
                  every: float | None = None, exact_frames: bool = False, per_frame: str | None = None,
                  **options) -> tuple[int, int]:
    """``artstyle predict INPUTS --engine ray -o OUTPUT``: classify on the connected cluster and
    write CSV (in input order, streamed as blocks finish) or a Parquet folder (written by the
    workers, one part file per block, so finished blocks survive a crash of the run).
    Videos are classified first, one per task (``predict_videos``), and their rows join the
    images' in input order; a manifest's videos are classified by the actors of its images.
    ``per_frame``: a JSON Lines file of each video frame's record, as the local ``--per-frame``
    (CSV output only: the Parquet parts are written by the workers, not here).
    ``on_failure(path, reason)`` is called for each failed input. Returns (rows, failures)."""
    kind = output_kind(output)
    if per_frame and kind == "parquet":
        raise ArtstyleError("--per-frame with --engine ray needs CSV output (-o FILE.csv or stdout): "
                            "the Parquet parts are written by the workers")
    classes = read_card(resolve_model(model))["classes"]
    listed = list_inputs(inputs)
    images, videos = split_videos(listed)
    manifests = any(is_manifest(a) for a in inputs)
    video_columns = manifests or any(may_be_video(p) for p in listed)
    sampling = {"frames": frames, "every": every, "exact_frames": exact_frames}
    results = (predict_dataset(read_inputs(inputs, images), model, video_columns=video_columns, sampling=sampling,
                               per_frame=bool(per_frame), **options)
               if images or manifests or not videos else None)
    video_options = {k: options[k] for k in ("actors", "cpus_per_actor", "threads", "runtime_env", "precision")
                     if k in options}
    video_results = (predict_videos(videos, model, per_frame=bool(per_frame), **sampling, **video_options)
                     if videos else None)
    context = ray.data.DataContext.get_current()
    if kind == "csv":
        context.execution_options.preserve_order = True  # rows in the order the inputs were given
        context.enable_progress_bars = False  # ours counts images/s over the whole cluster
        # Ray Data then advises enabling its bars, once per process: not advice for artstyle's users.
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
        video_rows = video_results.take_all() if video_results is not None else []
        batches = in_input_order(image_batches(results), video_rows, listed, set(videos))
        return write_csv(batches, classes, output, progress, on_failure, stdout or sys.stdout, video_columns,
                         per_frame)
    context.enable_progress_bars = progress  # Ray Data's bars: rows and rows/s per stage
    for dataset in (video_results, results):
        if dataset is not None:
            dataset.write_parquet(output)
    return summarize_parquet(output, on_failure)


def image_batches(results: ray.data.Dataset | None) -> Iterator[list[dict]]:
    if results is not None:
        for batch in results.iter_batches(batch_format="pyarrow", batch_size=None):
            yield batch.to_pylist()


def in_input_order(image_batches: Iterable[list[dict]], video_rows: list[dict], listed: list[str],
                   videos: set[str]) -> Iterator[list[dict]]:
    """The images' row batches (listed files, then manifests' rows) with the videos' rows put
    back at their places among the listed files."""
    image_places = iter([i for i, p in enumerate(listed) if p not in videos])
    video_places = deque(i for i, p in enumerate(listed) if p in videos)
    pending = deque(video_rows)
    for batch in image_batches:
        merged = []
        for row in batch:
            place = next(image_places, len(listed))
            while video_places and video_places[0] < place:
                video_places.popleft()
                merged.append(pending.popleft())
            merged.append(row)
        yield merged
    if pending:
        yield list(pending)


def write_csv(batches: Iterable[list[dict]], classes: list[str], output: str | None, progress: bool, on_failure,
              stdout, video_columns: bool = False, per_frame: str | None = None) -> tuple[int, int]:
    import contextlib

    from tqdm import tqdm

    from .infer.writers import CsvWriter, FrameWriter

    rows = failures = 0
    with contextlib.ExitStack() as stack:
        streams = []
        for path in (output, per_frame):
            try:
                streams.append(stack.enter_context(open(path, "w", encoding="utf-8", newline="")) if path else None)
            except OSError as exc:
                raise ArtstyleError(f"{path}: cannot write ({exc.strerror or exc})") from None
        writer = CsvWriter(streams[0] or stdout, classes, video=video_columns)
        frames = FrameWriter(streams[1]) if per_frame else None
        bar = stack.enter_context(tqdm(unit="img", desc="predict (ray)", file=sys.stderr, disable=not progress,
                                       dynamic_ncols=True))
        for table in batches:
            if frames is not None:  # the records go to their own file, in the rows' order
                frames.write_records([r for row in table for r in json.loads(row.pop("per_frame") or "[]")])
            writer.write_rows(table)
            rows += len(table)
            for row in table:
                if row["error"]:
                    failures += 1
                    if on_failure:
                        on_failure(row["path"], row["error"])
            bar.update(len(table))
        writer.close()
    return rows, failures


def summarize_parquet(output: str, on_failure) -> tuple[int, int]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(output, columns=["path", "error"])
    failed = table.filter(pc.not_equal(table.column("error"), ""))
    if on_failure:
        for row in failed.to_pylist():
            on_failure(row["path"], row["error"])
    return table.num_rows, failed.num_rows
