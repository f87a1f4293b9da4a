"""``artstyle predict PATH...``: classify images and videos (files, folders, globs, URLs or a list
on stdin) with the torch-free ONNX predictor (``--explain`` is the one path that needs torch)."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys

from ..errors import EXIT_SOME_FAILED, ArtstyleError
# Below this many inputs the rows themselves show progress; above it a bar is worth its import.
PROGRESS_MIN_INPUTS = 100
# A cluster run may meet millions of bad files; stderr lists the first ones, the error column all.
MAX_LISTED_FAILURES = 100
FORMAT_BY_SUFFIX = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".txt": "table"}

EPILOG = """\
inputs: image files, video files (MP4, MOV, MKV, WebM, AVI, animated GIF/WebP: recognised
by their content), folders (searched recursively), glob patterns ('photos/**/*.png'),
http(s):// URLs, and '-' to read one path or URL per line from stdin.

output: a table on a terminal; CSV when stdout is piped; --format or the -o suffix
(.csv, .jsonl, .json) chooses otherwise. CSV/JSONL/JSON have one row per input with
path, label, confidence, p_<class> for every class and error (empty when fine). A run
with videos adds frames, duration_s and share_<class> (the fraction of the sampled
frames each class wins; p_<class> is the mean of the frames' probabilities), empty for
images; --per-frame writes each sampled frame's prediction as JSON Lines.

exit status: 0 every input was classified; 2 some inputs failed (each failure is one line
on stderr naming the input and the reason, and a row with 'error' in CSV/JSONL/JSON);
1 nothing could be done (no model, no inputs, a bad value); a malformed command line
is rejected by the argument parser with its usage message (exit 2)."""


def register(sub) -> None:
    p = sub.add_parser(
        "predict", help="classify images and videos (files, folders, globs, URLs, - for stdin)",
        description="Classify images and videos as anime, cartoon or human (or your own model's classes).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="PATH", help="files, folders, globs, URLs or -")
    add_model_options(p, model_help="With --explain: a run directory or checkpoint also works")
    p.add_argument("-f", "--format", choices=("table", "csv", "jsonl", "json"),
                   help="output format (default: table on a terminal, else from the -o suffix, else csv)")
    p.add_argument("-o", "--output", help="write results to this file (with --explain: a folder)")
    p.add_argument("-k", "--top-k", type=int, default=1, help="also list the k most probable classes")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds for each URL's whole download (default 10)")
    p.add_argument("--max-download-mb", type=float, default=20.0, help="size cap for URLs (default 20 MB)")
    p.add_argument("--min-confidence", type=float, default=0.0, metavar="P",
                   help="label a prediction 'uncertain' when its (calibrated) confidence is below P; "
                        "its probabilities are still written (default 0: always a class)")
    p.add_argument("--allow-private-urls", action="store_true",
                   help="let URLs reach loopback, private and link-local addresses (refused by default)")
    p.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    video = p.add_argument_group("videos")
    video.add_argument("--frames", type=int, default=16, metavar="N",
                       help="frames per video, spread evenly, skipping the first and last 5%% (default 16)")
    video.add_argument("--every", type=float, metavar="SECONDS",
                       help="instead of --frames: one frame every SECONDS from the start")
    video.add_argument("--exact-frames", action="store_true",
                       help="read exactly the planned frames (default: the nearest frame that decodes from a "
                            "keyframe alone, each with its own time; exact seeks are several times slower)")
    video.add_argument("--per-frame", metavar="OUT.jsonl",
                       help="also write each sampled frame's prediction (path, frame, time_s, label, p_<class>)")
    ray = p.add_argument_group("scale out with Ray (pip install 'artstyle[ray]')")
    ray.add_argument("--engine", choices=("local", "ray"), default="local",
                     help="local: this process (default); ray: decode tasks and a pool of model actors "
                     "on a Ray cluster; -o is then a .csv file or a Parquet folder")
    ray.add_argument("--address", help="Ray cluster to join (HOST:PORT, auto, ray://...; default: RAY_ADDRESS, "
                     "else a local instance)")
    ray.add_argument("--actors", type=int, default=1, help="model replicas, one ONNX Runtime session each (default 1)")
    ray.add_argument("--cpus-per-actor", type=float, default=1.0,
                     help="CPUs each actor reserves (default 1; fractions allowed, the rest decode)")
    p.add_argument("--explain", action="store_true",
                   help="write a Grad-CAM heatmap per image and a grid figure into the -o folder (needs torch)")
    p.set_defaults(func=run)


def add_model_options(p, model_help: str = "") -> None:
    """The model and the predictor's speed options, shared by predict and sort."""
    p.add_argument("-m", "--model", help=" ".join(filter(None, (
        "exported model (.onnx with its .json card); default: the shipped model.", model_help))))
    p.add_argument("--precision", choices=("auto", "fp32", "int8"), default="auto",
                   help="fp32 or int8 version of the model (MODEL.onnx or MODEL.int8.onnx beside it, from "
                        "`artstyle export --int8`); auto (default): the file given; for the shipped model, int8 wherever "
                        "it is measured as accurate as fp32: every x86-64 CPU, with or without VNNI, since its weights "
                        "are 7-bit (fp32 on other architectures)")
    p.add_argument("--batch-size", type=int, default=32, help="images per model call (default 32)")
    p.add_argument("--workers", type=int, help="decode threads (default: one per CPU)")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads (default: one per CPU)")
    p.add_argument("--streams", type=int,
                   help="batches in the model at once, each on threads/streams threads (default: one per "
                        "thread, up to 4; 1: one batch at a time over every thread)")


def check_model_args(args) -> None:
    if args.batch_size < 1:
        raise ArtstyleError("--batch-size must be at least 1")
    for name in ("workers", "threads", "streams"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ArtstyleError(f"--{name} must be at least 1")


def model_options(args) -> dict:
    """``add_model_options``' values as ``artstyle.load`` keywords (the model itself aside)."""
    return dict(precision=args.precision, threads=args.threads, streams=args.streams,
                batch_size=args.batch_size, workers=args.workers)


def check_args(args) -> None:
    if args.top_k < 1:
        raise ArtstyleError("--top-k must be at least 1")
    check_model_args(args)
    if args.frames < 1 or (args.every is not None and not 0 < args.every < math.inf):
        raise ArtstyleError("--frames must be at least 1 and --every a positive number of seconds")
    if args.explain and not args.output:
        raise ArtstyleError("--explain needs -o DIR, the folder for the heatmaps")
    if args.per_frame and args.output and os.path.realpath(args.per_frame) == os.path.realpath(args.output):
        raise ArtstyleError(f"{args.per_frame}: --per-frame needs a file of its own (it is also the -o output)")
    if args.engine == "ray":
        if args.explain or args.top_k != 1 or args.format not in (None, "csv"):
            raise ArtstyleError("--engine ray writes CSV or Parquet rows; --explain, --top-k and --format are local only")
        if args.streams is not None:
            raise ArtstyleError("--streams is local only: each Ray actor runs one batch at a time (--actors scales out)")
        if args.actors < 1 or args.cpus_per_actor <= 0:
            raise ArtstyleError("--actors and --cpus-per-actor must be positive")


def choose_format(args, stdout) -> str:
    if args.format:
        return args.format
    if args.output:
        return FORMAT_BY_SUFFIX.get(os.path.splitext(args.output)[1].lower(), "csv")
    return "table" if stdout.isatty() else "csv"


@contextlib.contextmanager
def open_output(path: str | None, stdout):
    if not path:
        yield stdout
        return
    try:
        stream = open(path, "w", encoding="utf-8", newline="")
    except OSError as exc:
        raise ArtstyleError(f"{path}: cannot write ({exc.strerror or exc})") from None
    with stream:
        yield stream


@contextlib.contextmanager
def open_per_frame(path: str | None):
    """``--per-frame``: a JSON Lines writer of each video frame's prediction, or None."""
    if not path:
        yield None
        return
    from ..infer.writers import FrameWriter

    with open_output(path, None) as stream:
        yield FrameWriter(stream)


def progress_bar(predictions, total: int, enabled: bool):
    """A bar on stderr for large runs; None when rows on the terminal already show progress."""
    if not enabled:
        return None, predictions
    from tqdm import tqdm

    bar = tqdm(predictions, total=total, unit="img", file=sys.stderr, dynamic_ncols=True, leave=False)
    return bar, bar


def report_failure(pred, bar) -> None:
    line = f"artstyle: error: {pred.source}: {pred.error}"
    if bar is not None:
        bar.write(line, file=sys.stderr)
    else:
        print(line, file=sys.stderr, flush=True)


def run(args) -> int:
    check_args(args)
    if args.explain:
        from .explain import explain_command  # torch: only on this path

        return explain_command(args)
    if args.engine == "ray":
        return run_ray(args)

    from ..infer import load
    from ..infer.sources import expand_inputs
    from ..infer.video import may_be_video
    from ..infer.writers import open_writer

    quiet_ffmpeg_logs()
    inputs = expand_inputs(args.inputs)
    if not inputs:
        raise ArtstyleError(f"no images or videos found in {' '.join(args.inputs)}")
    classifier = load(args.model, **model_options(args),
                      url_timeout=args.timeout, max_download=int(args.max_download_mb * 1024 * 1024),
                      min_confidence=args.min_confidence, allow_private_urls=args.allow_private_urls)
    stdout = sys.stdout
    fmt = choose_format(args, stdout)
    to_terminal = not args.output and stdout.isatty()
    show_bar = (not args.no_progress and len(inputs) >= PROGRESS_MIN_INPUTS and sys.stderr.isatty()
                and not (to_terminal and fmt == "table"))
    failures = 0
    try:
        with open_output(args.output, stdout) as stream, open_per_frame(args.per_frame) as per_frame:
            writer = open_writer(fmt, stream, classifier.classes, args.top_k,
                                 video=any(may_be_video(p) for p in inputs))
            predictions = classifier.predict_iter(inputs, frames=args.frames, every=args.every,
                                                  exact_frames=args.exact_frames)
            bar, predictions = progress_bar(predictions, len(inputs), show_bar)
            try:
                for pred in predictions:
                    writer.write(pred)
                    if per_frame is not None:
                        per_frame.write(pred)
                    if not pred.ok:
                        failures += 1
                        report_failure(pred, bar)
            finally:
                if bar is not None:
                    bar.close()
                writer.close()  # also on Ctrl-C: a JSON array is closed, every row so far is kept
    except BrokenPipeError:
        # `artstyle predict dir | head`: the reader has what it wanted. Point stdout at devnull
        # so that Python's own flush at exit does not fail again (the recipe in Python's docs).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if failures:
        print(f"artstyle: {failures} of {len(inputs)} inputs could not be classified", file=sys.stderr)
        return EXIT_SOME_FAILED
    return 0


def run_ray(args) -> int:
    """``--engine ray``: the same rows, computed by decode tasks and model actors on a cluster."""
    quiet_ray_logs()
    quiet_ffmpeg_logs()  # before Ray starts its workers, which inherit it
    from .. import ray as on_ray  # imports Ray: only on this path

    listed = 0

    def report(path: str, reason: str) -> None:
        nonlocal listed
        listed += 1
        if listed <= MAX_LISTED_FAILURES:
            print(f"artstyle: error: {path}: {reason}", file=sys.stderr, flush=True)

    on_ray.connect(args.address)
    rows, failures = on_ray.predict_files(
        args.inputs, args.output, args.model, progress=not args.no_progress and sys.stderr.isatty(),
        on_failure=report, actors=args.actors, batch_size=args.batch_size, cpus_per_actor=args.cpus_per_actor,
        threads=args.threads, url_timeout=args.timeout, max_download=int(args.max_download_mb * 1024 * 1024),
        precision=args.precision, frames=args.frames, every=args.every, exact_frames=args.exact_frames,
        per_frame=args.per_frame,
    )
    if failures:
        more = f" ({failures - MAX_LISTED_FAILURES} not listed above)" if failures > MAX_LISTED_FAILURES else ""
        print(f"artstyle: {failures} of {rows} inputs could not be classified{more}", file=sys.stderr)
        return EXIT_SOME_FAILED
    return 0


def quiet_ffmpeg_logs() -> None:
    """FFmpeg prints its decoders' complaints about a damaged video on stderr; the row's error
    says it in one line. OpenCV's documented switch, read when its FFmpeg backend starts (a
    user's own setting wins; -8 is FFmpeg's AV_LOG_QUIET), and OpenCV's own warnings likewise."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    if "OPENCV_LOG_LEVEL" not in os.environ:
        os.environ["OPENCV_LOG_LEVEL"] = "ERROR"  # for worker processes (the server's)
        import cv2  # this one may have read the variable already, when it imported cv2

        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def quiet_ray_logs() -> None:
    """Ray Data logs every execution plan at INFO; a command's stderr is for the user's errors.
    Its documented switch, read when Ray Data sets up logging (a user's own setting wins)."""
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "WARNING")
