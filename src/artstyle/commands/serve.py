"""``artstyle serve``: the classifier as an HTTP API with a web page (FastAPI on uvicorn)."""

from __future__ import annotations

import argparse
import os

from .._addresses import is_loopback as loopback_address
from .._addresses import resolve
from ..errors import ArtstyleError
from ..serve.settings import ServeSettings

DEFAULTS = ServeSettings()
API_KEY_ENV = "ARTSTYLE_API_KEY"
RESOLVE_TIMEOUT = 10.0  # seconds for --host's name to resolve

EPILOG = """\
endpoints: POST /v1/predict (multipart field 'files', repeatable, or one image as the raw
body; ?explain=true adds Grad-CAM heatmaps), GET /v1/model (the model card), GET /healthz,
the web page at /, API docs at /docs.

access: with an API key (--api-key, or better the ARTSTYLE_API_KEY environment variable, which
other users cannot read from the process list) /v1/* needs 'Authorization: Bearer KEY'; /healthz
and the page stay open. Listening beyond this machine (--host 0.0.0.0 or a LAN address) needs a
key, or --insecure-public to serve everyone on purpose.

limits: a body over --max-upload-mb gets 413, more than --max-images files 400, an image over
--max-megapixels 422 (decompression bombs are refused from their header), a body that stalls
past --request-timeout 408, a connection idle or sending its request head for longer than
--idle-timeout is closed."""


def register(sub) -> None:
    p = sub.add_parser(
        "serve", help="serve the classifier over HTTP, with a web page",
        description="Serve the classifier as a JSON API and a drag-and-drop web page.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-m", "--model", help="exported model (.onnx with its .json card); default: the shipped model")
    p.add_argument("--precision", choices=("auto", "fp32", "int8"), default="auto",
                   help="fp32 or int8 version of the model (see `artstyle predict --help`; default auto)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--workers", type=int, default=1, help="server processes, each with the model (default 1)")
    p.add_argument("--threads", type=int, help="decode and ONNX Runtime threads per process (default: cores / workers)")
    p.add_argument("--streams", type=int,
                   help="micro-batches in the model at once, each on threads/streams threads (default: one "
                        "per thread, up to 4; 1: one batch at a time over every thread)")
    p.add_argument("--max-upload-mb", type=float, default=DEFAULTS.max_upload_mb,
                   help=f"largest request body (default {DEFAULTS.max_upload_mb:g} MB)")
    p.add_argument("--max-images", type=int, default=DEFAULTS.max_images,
                   help=f"most files in one request (default {DEFAULTS.max_images})")
    p.add_argument("--max-megapixels", type=float, default=DEFAULTS.max_megapixels,
                   help=f"largest image (default {DEFAULTS.max_megapixels:g} megapixels)")
    p.add_argument("--request-timeout", type=float, default=DEFAULTS.request_timeout,
                   help=f"seconds for a request to arrive and be answered (default {DEFAULTS.request_timeout:g})")
    p.add_argument("--idle-timeout", type=float, default=DEFAULTS.idle_timeout,
                   help=f"seconds a connection may idle or take to send its request head (default {DEFAULTS.idle_timeout:g})")
    p.add_argument("--max-batch", type=int, default=DEFAULTS.max_batch,
                   help=f"images per model call across concurrent requests; 1 turns micro-batching off "
                        f"(default {DEFAULTS.max_batch})")
    p.add_argument("--max-connections", type=int, default=DEFAULTS.max_connections,
                   help=f"open connections before answering 503 (default {DEFAULTS.max_connections})")
    p.add_argument("--api-key", help=f"require 'Authorization: Bearer KEY' on /v1/* (default: ${API_KEY_ENV})")
    p.add_argument("--insecure-public", action="store_true",
                   help="allow listening on a non-loopback address without an API key")
    p.add_argument("--max-explain-queue", type=int, default=DEFAULTS.max_explain_queue,
                   help=f"?explain=true requests admitted at once, more get 503 (default {DEFAULTS.max_explain_queue})")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    p.add_argument("--no-access-log", action="store_true", help="do not log a line per request")
    p.set_defaults(func=run)


def check_args(args) -> None:
    for name in ("workers", "threads", "streams", "max_images", "max_batch", "max_connections", "max_explain_queue"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ArtstyleError(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("max_upload_mb", "max_megapixels", "request_timeout", "idle_timeout"):
        if getattr(args, name) <= 0:
            raise ArtstyleError(f"--{name.replace('_', '-')} must be positive")
    if not 0 <= args.port <= 65535:
        raise ArtstyleError("--port must be between 0 and 65535")


def is_loopback(host: str) -> bool:
    """True when every address ``host`` stands for is this machine's own loopback."""
    try:
        addresses = resolve(host.strip("[]"), timeout=RESOLVE_TIMEOUT)
    except (OSError, UnicodeError) as exc:  # socket.gaierror, TimeoutError
        raise ArtstyleError(f"--host {host}: cannot resolve ({getattr(exc, 'strerror', None) or exc})") from None
    return bool(addresses) and all(loopback_address(ip) for ip in addresses)


def check_exposure(host: str, api_key: str | None, insecure_public: bool) -> None:
    """Refuse to serve the network at large without a key unless told to."""
    if not api_key and not insecure_public and not is_loopback(host):
        raise ArtstyleError(f"--host {host} is reachable from other machines: set an API key "
                            f"(${API_KEY_ENV} or --api-key), or pass --insecure-public to serve without one")


def run(args) -> int:
    check_args(args)
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    check_exposure(args.host, api_key, args.insecure_public)
    from ..infer.predictor import read_card, resolve_model
    from ..serve.server import run_server
    from ..system import cpu_count
    from .predict import quiet_ffmpeg_logs

    quiet_ffmpeg_logs()  # a damaged video upload is the client's 4xx, not noise in the server's log

    # Check the model in this process too, so a bad --model is one line here, not one per worker.
    read_card(resolve_model(args.model, args.precision))
    threads = args.threads or max(1, cpu_count() // args.workers)
    if args.streams and args.streams > threads:
        raise ArtstyleError(f"--streams {args.streams} cannot exceed the {threads} thread(s) per process: "
                            f"each stream needs a thread (raise --threads or lower --streams)")
    settings = ServeSettings(
        model=args.model, precision=args.precision, max_upload_mb=args.max_upload_mb, max_images=args.max_images,
        max_megapixels=args.max_megapixels, request_timeout=args.request_timeout, idle_timeout=args.idle_timeout,
        max_batch=args.max_batch, threads=threads, streams=args.streams, max_connections=args.max_connections,
        max_explain_queue=args.max_explain_queue, api_key=api_key,
    )
    run_server(settings, host=args.host, port=args.port, workers=args.workers,
               log_level=args.log_level, access_log=not args.no_access_log)
    return 0
