"""``artstyle compare DATA --models a,b,c -o runs/compare``."""

from __future__ import annotations

from ..errors import ArtstyleError
from .train import add_config_flags, config_overrides

SKIP = {"data", "backbone", "weights", "output"}


def register(sub) -> None:
    p = sub.add_parser("compare", help="train several backbones on one split and compare them")
    p.add_argument("data", help="data dir, manifest CSV or split dir")
    p.add_argument("--models", required=True, help="comma-separated backbones, e.g. efficientnet_lite0,resnet50")
    p.add_argument("--weights", action="append", default=[], metavar="BACKBONE=FILE",
                   help="ImageNet weights file for a backbone without packaged weights (repeatable)")
    p.add_argument("-o", "--output", default="runs/compare")
    add_config_flags(p, skip=SKIP)
    p.set_defaults(func=run)


def parse_weights(items: list[str]) -> dict[str, str]:
    pairs = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ArtstyleError(f"--weights expects BACKBONE=FILE, got '{item}'")
        pairs[name] = path
    return pairs


def run(args) -> int:
    from ..engine.compare import compare

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    table = compare(args.data, models, args.output, weights=parse_weights(args.weights),
                    **config_overrides(args, skip=SKIP))
    cols = [c for c in ("backbone", "init", "test_accuracy", "test_macro_f1", "params_m", "gflops",
                        "cpu_images_per_s", "train_minutes", "error") if c in table]
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"table: {args.output}/compare.md")
    return 0
