"""``artstyle data scan|split|show|audit``: the dataset tools (a thin layer over ``artstyle.data``)."""

from __future__ import annotations

import argparse
import sys

MAX_LISTED = 100  # invalid files printed one per line; the manifest's error column has them all


def register(sub) -> None:
    parser = sub.add_parser(
        "data",
        help="scan, split, show and audit a folder-per-class image dataset",
        description="Dataset tools. A dataset is a folder with one subfolder per class "
        "(DATA_DIR/anime/*.jpg, DATA_DIR/cartoon/...), or already split: DATA_DIR/train|val|test/<class>/.",
    )
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    _add_scan(actions)
    _add_split(actions)
    _add_show(actions)
    _add_audit(actions)


def _max_pixels(text: str) -> int | None:
    try:
        value = int(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of pixels such as 90000000 or 9e7, got {text!r}") from None
    return value if value > 0 else None


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction such as 0.15, got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text}")
    return value


def _add_progress_flags(p) -> None:
    p.add_argument("--workers", type=int, default=None, help="processes for decoding and hashing (default: all CPUs)")
    p.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="no progress bar (it is only shown on a terminal anyway)",
    )


def _add_scan(actions) -> None:
    from ..images import DEFAULT_MAX_PIXELS

    p = actions.add_parser(
        "scan",
        help="describe every image of DATA_DIR in a manifest CSV (+ classes.json)",
        description="Walk DATA_DIR (one subfolder per class, nested folders allowed; or train/ val/ test/ "
        "each holding class folders) and write one row per image: path, label, label_idx, width, height, "
        "format, mode, bytes, sha256, phash, valid, error, split. Unreadable files are kept with the reason.",
    )
    p.add_argument("data_dir", metavar="DATA_DIR")
    p.add_argument("-o", "--output", default="manifest.csv", help="manifest CSV to write (default: manifest.csv)")
    p.add_argument(
        "--max-pixels",
        type=_max_pixels,
        default=DEFAULT_MAX_PIXELS,
        help=f"refuse images above this many pixels (default {DEFAULT_MAX_PIXELS:.0e}; 0 = no limit)",
    )
    p.add_argument(
        "--group-by",
        metavar="REGEX",
        default=None,
        help="name each image's group (its source) by this regex on the path below DATA_DIR: the first "
        "capture group, else the match (default: the first subfolder under the class folder, "
        "as in CLASS/SOURCE/file.jpg)",
    )
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: processes on this machine (default); ray: tasks on a Ray cluster "
                   "(pip install 'artstyle[ray]'; every node must see DATA_DIR at the same path)")
    p.add_argument("--address", help="with --engine ray: the cluster to join (default: RAY_ADDRESS, else a local instance)")
    _add_progress_flags(p)
    p.set_defaults(func=_run_scan)


def _add_split(actions) -> None:
    from ..config import DEFAULT_PHASH_THRESHOLD

    p = actions.add_parser(
        "split",
        help="stratified train/val/test split that keeps duplicates together",
        description="Split a manifest into train.csv, val.csv and test.csv, stratified by class and "
        "reproducible for a seed. Exact and near duplicates always share a split. A manifest of pre-split "
        "folders keeps its split.",
    )
    p.add_argument("manifest", metavar="MANIFEST")
    p.add_argument("-o", "--output", default="splits", help="folder for train/val/test.csv (default: splits)")
    p.add_argument("--val", type=_fraction, default=0.15, help="validation fraction (default 0.15)")
    p.add_argument("--test", type=_fraction, default=0.15, help="test fraction (default 0.15)")
    p.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    p.add_argument(
        "--phash-threshold",
        type=int,
        default=DEFAULT_PHASH_THRESHOLD,
        help=f"max perceptual-hash distance of near duplicates (default {DEFAULT_PHASH_THRESHOLD})",
    )
    p.add_argument(
        "--by-group",
        action="store_true",
        help="keep whole groups (sources, the manifest's group column) inside one split, so that val and "
        "test measure sources the model never saw",
    )
    p.set_defaults(func=_run_split)


def _add_show(actions) -> None:
    p = actions.add_parser(
        "show",
        help="save a grid of random images per class",
        description="Save a labelled grid of random images per class to a PNG.",
    )
    p.add_argument("source", metavar="MANIFEST_OR_DIR")
    p.add_argument("-o", "--output", default="samples.png", help="PNG to write (default: samples.png)")
    p.add_argument("-n", "--per-class", type=int, default=6, help="images per class (default 6)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=_run_show)


def _add_audit(actions) -> None:
    from ..config import DEFAULT_PHASH_THRESHOLD, TINY_SIDE

    p = actions.add_parser(
        "audit",
        help="report invalid files, duplicates, tiny images and metadata shortcuts",
        description="Write audit.md with charts: class balance, sizes per class, invalid files, duplicates "
        "within and across classes, tiny images, and whether metadata alone (size, format) predicts the class.",
    )
    p.add_argument("source", metavar="DATA_DIR_OR_MANIFEST")
    p.add_argument("-o", "--output", default="audit", help="report folder (default: audit)")
    p.add_argument(
        "--phash-threshold",
        type=int,
        default=DEFAULT_PHASH_THRESHOLD,
        help=f"max perceptual-hash distance of near duplicates (default {DEFAULT_PHASH_THRESHOLD})",
    )
    p.add_argument(
        "--tiny-side", type=int, default=TINY_SIDE, help=f"tiny = short side under this (default {TINY_SIDE} px)"
    )
    p.add_argument("--seed", type=int, default=0, help="cross-validation seed (default 0)")
    _add_progress_flags(p)
    p.set_defaults(func=_run_audit)


# --- handlers ---------------------------------------------------------------------------------


def _progress(args) -> bool:
    # A bar redrawn into a log file or a pipe is noise; show it only to a person at a terminal.
    return args.progress and sys.stderr.isatty()


def _print_class_counts(df) -> None:
    import pandas as pd

    table = pd.DataFrame({"files": df.groupby("label").size(), "invalid": (~df["valid"]).groupby(df["label"]).sum()})
    if (df["split"] != "").any():
        per_split = df[df["valid"]].groupby(["label", "split"]).size().unstack(fill_value=0)
        table = table.join(per_split[[s for s in ("train", "val", "test") if s in per_split.columns]]).fillna(0)
    print(table.astype(int).rename_axis("class").to_string())


def _print_invalid(df) -> None:
    bad = df[~df["valid"]]
    if bad.empty:
        return
    print(f"Invalid files ({len(bad)}):")
    for row in bad.head(MAX_LISTED).itertuples():
        print(f"  {row.path}: {row.error}")
    if len(bad) > MAX_LISTED:
        print(f"  ... and {len(bad) - MAX_LISTED} more (see the error column of the manifest)")


def _print_notes(notes) -> None:
    for note in notes:
        print(f"note: {note}")


def _run_scan(args) -> int:
    from ..data import scan

    if args.engine == "ray":
        from .predict import quiet_ray_logs

        quiet_ray_logs()
        from ..ray import connect

        connect(args.address)
    df = scan(args.data_dir, args.output, workers=args.workers, max_pixels=args.max_pixels, progress=_progress(args),
              engine=args.engine, group_by=args.group_by)
    seconds = df.attrs.get("seconds", 0.0)
    print(
        f"Scanned {len(df):,} files in {df['label'].nunique()} classes from {args.data_dir} "
        f"({seconds:.1f} s, {len(df) / max(seconds, 1e-9):,.0f} images/s)"
    )
    _print_class_counts(df)
    _print_invalid(df)
    _print_notes(df.attrs.get("notes", []))
    groups = df.loc[df["group"] != "", "group"].nunique()
    if groups:
        print(f"{groups} groups (sources); validate by group: artstyle data split {args.output} --by-group")
    print(f"Wrote {args.output} and classes.json beside it. Next: artstyle data split {args.output} -o splits/")
    return 0


def _run_split(args) -> int:
    from ..data import split

    parts = split(
        args.manifest, args.output, val=args.val, test=args.test, seed=args.seed,
        phash_threshold=args.phash_threshold, by_group=args.by_group,
    )
    report = parts.report
    if report["dropped_invalid"]:
        print(f"Dropped {report['dropped_invalid']} invalid files (listed in the manifest's error column)")
    if report["mode"] == "new split":
        print(
            f"{report['images_in_duplicate_groups']:,} images are exact or near duplicates of another; "
            f"{report['groups']:,} groups, each kept within one split (seed {args.seed})"
        )
    else:
        print("Kept the split of the pre-split folders")
        if report["leaking_groups"]:
            print(
                f"warning: {report['leaking_groups']} duplicate groups straddle two of those splits (leakage); "
                "'artstyle data audit' lists the pairs"
            )
    for name, groups in report.get("groups_per_split", {}).items():
        print(f"{name}: {len(groups)} groups" + (f" ({', '.join(groups[:8])}{', ...' if len(groups) > 8 else ''})" if groups else ""))
    for name, missing in report["classes_missing"].items():
        print(f"warning: no {', '.join(missing)} images in {name}")
    _print_split_table(parts)
    print(f"Wrote train.csv, val.csv, test.csv, classes.json and split.json to {args.output}")
    return 0


def _print_split_table(parts) -> None:
    import pandas as pd

    counts = {name: part["label"].value_counts() for name, part in parts.items()}
    table = pd.DataFrame(counts).fillna(0).astype(int).sort_index()
    table.loc["total"] = table.sum()
    shares = table.loc["total"] / max(1, table.loc["total"].sum())
    print(table.rename_axis("class").to_string())
    print("share    " + "  ".join(f"{name} {share:.1%}" for name, share in shares.items()))


def _run_show(args) -> int:
    from ..data import show

    shown = show(args.source, args.output, per_class=args.per_class, seed=args.seed)
    print(f"Wrote {args.output}: {len(shown)} images from {shown['label'].nunique()} classes")
    return 0


def _run_audit(args) -> int:
    from ..data import audit
    from ..data.auditor import shortcut_verdict

    summary = audit(
        args.source,
        args.output,
        phash_threshold=args.phash_threshold,
        tiny_side=args.tiny_side,
        seed=args.seed,
        workers=args.workers,
        progress=_progress(args),
    )
    print(
        f"{summary['files']:,} files, {summary['valid']:,} valid, {summary['invalid']:,} invalid; classes: "
        + ", ".join(f"{k} {v:,}" for k, v in summary["classes"].items())
    )
    for item in summary["invalid_files"][:MAX_LISTED]:
        print(f"  {item['path']}: {item['error']}")
    print("Duplicate pairs: " + ", ".join(f"{k} {v:,}" for k, v in summary["duplicate_pairs"].items()))
    print(f"Tiny images (short side < {summary['tiny_side']} px): {summary['tiny_images']:,}")
    print(shortcut_verdict(summary["shortcut"]).replace("**", "").replace("`", ""))
    if summary["group_check"]["warning"]:
        print(f"warning: {summary['group_check']['warning']}")
    print(f"Report: {args.output}/audit.md")
    return 0
