"""The ``artstyle`` command line: a thin layer over the Python API.

Each sub-command lives in ``artstyle/commands/<name>.py`` and exposes ``register(subparsers)``;
heavy imports (torch, pandas) happen inside the handlers so ``artstyle predict`` starts fast.
Errors the user can fix (``ArtstyleError``) print one line and exit 1, never a traceback; a
malformed command line is argparse's usage message and exit 2, as for any Unix tool.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import ArtstyleError

COMMANDS = ("data", "train", "crossval", "evaluate", "compare", "export", "predict", "sort", "serve")

EXIT_USER_ERROR = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="artstyle",
        description="Tell anime, cartoon and human (photo) images apart; fine-tune your own classifier.",
    )
    parser.add_argument("--version", action="version", version=f"artstyle {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f".commands.{name}", __package__).register(sub)
    return parser


def lift_pillow_limit() -> None:
    """The artstyle command is a process of its own, where artstyle's --max-pixels (checked from
    the header, with a clearer message) should decide rather than Pillow's fixed limit. Importing
    artstyle as a library leaves Pillow's settings alone."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)  # --help, --version: 0; a usage error: argparse's 2
    lift_pillow_limit()
    try:
        return int(args.func(args) or 0)
    except ArtstyleError as exc:
        print(f"artstyle: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("artstyle: interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as exc:
        # The core install is predict-only; training, data tools and the server are extras.
        extra = {"torch": "train", "timm": "train", "fastapi": "serve", "uvicorn": "serve",
                 "ray": "ray", "pyarrow": "ray"}.get(
            (exc.name or "").split(".")[0], "all"
        )
        print(
            f"artstyle: error: this command needs '{exc.name}', which is not installed; "
            f"install it with: pip install 'artstyle[{extra}]'",
            file=sys.stderr,
        )
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
