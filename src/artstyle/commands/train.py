"""``artstyle train DATA -o runs/NAME``: flags are generated from ``TrainConfig`` so the CLI, the
API and the saved config.json can never disagree."""

from __future__ import annotations

import argparse
from dataclasses import fields

from ..config import TrainConfig

POSITIONAL = {"data"}
SHORT = {"output": "-o"}


def add_config_flags(parser: argparse.ArgumentParser, skip: set[str] = frozenset()) -> None:
    """One flag per TrainConfig field; every default is None so that only flags the user
    actually typed override a config (and are checked on --resume)."""
    for f in fields(TrainConfig):
        if f.name in POSITIONAL or f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        names = [SHORT[f.name], flag] if f.name in SHORT else [flag]
        help_text = f"{f.metadata.get('help', '')} (default: {f.default})"
        if f.type in ("bool", bool):
            parser.add_argument(*names, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                                help=help_text)
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)
            parser.add_argument(*names, dest=f.name, type=kind, default=None, help=help_text,
                                choices=f.metadata.get("choices"))


def config_overrides(args: argparse.Namespace, skip: set[str] = frozenset()) -> dict:
    return {f.name: getattr(args, f.name) for f in fields(TrainConfig)
            if f.name not in skip and getattr(args, f.name, None) is not None}


def register(sub) -> None:
    p = sub.add_parser("train", help="fine-tune a pretrained backbone on a folder of images",
                       description="Train a classifier; writes a run directory (config, split, history, "
                                   "curves, best/last checkpoints, test report).")
    p.add_argument("data", nargs="?", default=None, help="data dir (one subfolder per class), manifest CSV or split dir")
    p.add_argument("--resume", metavar="RUN", help="continue an interrupted run from its last checkpoint")
    add_config_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..engine import train

    overrides = config_overrides(args)
    result = train(resume=args.resume, **overrides)
    if result.test:
        print(f"test accuracy {result.test['accuracy']:.4f}  macro-F1 {result.test['macro_f1']:.4f}  "
              f"(n={result.test['n']}); report: {result.run_dir / 'test' / 'report.md'}")
    print(f"run saved to {result.run_dir}")
    return 0
