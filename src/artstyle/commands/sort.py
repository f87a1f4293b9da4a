"""``artstyle sort SRC... -o DEST``: classify files and copy, move or link them into
``DEST/<label>/``, logged in ``DEST/.artstyle-sort.csv``; ``artstyle sort --undo DEST`` reverses it.
A thin layer over ``artstyle.sorting``."""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter

from ..errors import EXIT_SOME_FAILED, ArtstyleError
from .predict import add_model_options, check_model_args, model_options, progress_bar, report_failure

PLAN_COLUMNS = ["source", "destination", "label", "confidence", "action", "note", "error"]
PAST = {"copy": "copied", "move": "moved", "link": "linked", "symlink": "linked"}

EPILOG = """\
inputs: image files, folders (searched recursively), glob patterns ('photos/**/*.png') and '-'
to read one path per line from stdin, as for `artstyle predict`. Files already inside DEST are
left out, so DEST may lie inside SRC.

DEST/<label>/ keeps the sub-folders each file had below its SRC (--flat drops them). A name
already in DEST is never overwritten: the file becomes name-1.jpg, name-2.jpg, ... (the log's
note says so). Every operation is logged as it happens in DEST/.artstyle-sort.csv (source,
destination, label, confidence, action, size, sha256); a re-run skips what is sorted already,
and `artstyle sort --undo DEST` reverses it all. Killed at any moment (even kill -9), every
file is whole at its source or at its destination; the next run or undo finishes the rest.

exit status: 0 every file was sorted (or undone); 2 some could not be (each is one line on
stderr naming the file and the reason) and were left where they are; 1 nothing could be done."""


def register(sub) -> None:
    p = sub.add_parser(
        "sort", help="sort images into DEST/anime, DEST/cartoon, DEST/human (copy, move or link)",
        description="Sort images into one folder per class (or your own model's classes), with an undo.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="*", metavar="SRC", help="files, folders, globs or -")
    p.add_argument("-o", "--output", metavar="DEST", help="the folder to sort into")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--copy", dest="mode", action="store_const", const="copy", help="copy each file (default)")
    how.add_argument("--move", dest="mode", action="store_const", const="move", help="move each file")
    how.add_argument("--link", dest="mode", action="store_const", const="link",
                     help="hard-link each file (a symlink where DEST is on another filesystem)")
    p.set_defaults(mode="copy")
    p.add_argument("--dry-run", action="store_true", help="print the plan as CSV and touch nothing")
    p.add_argument("--flat", action="store_true", help="put every file straight into its class folder")
    p.add_argument("--min-confidence", type=float, default=0.0, metavar="P",
                   help="files whose (calibrated) confidence is below P go to DEST/uncertain/ (default 0)")
    p.add_argument("--undo", metavar="DEST", help="reverse what sort did in DEST (with --dry-run: list it)")
    add_model_options(p)
    p.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.undo:
        if args.inputs or args.output:
            raise ArtstyleError("--undo DEST takes no SRC and no -o")
        return run_undo(args)
    if not args.inputs or not args.output:
        raise ArtstyleError("sort needs SRC... and -o DEST (or --undo DEST)")
    check_model_args(args)
    from ..sorting import collect_inputs, sort_iter

    inputs = collect_inputs(args.inputs, args.output)
    records = sort_iter(inputs, args.output, mode=args.mode, min_confidence=args.min_confidence,
                        dry_run=args.dry_run, flat=args.flat, model=args.model, **model_options(args))
    # A plan printed on the terminal shows its own progress.
    show_bar = not args.no_progress and sys.stderr.isatty() and not (args.dry_run and sys.stdout.isatty())
    bar, records = progress_bar(records, len(inputs), show_bar)
    plan = csv.DictWriter(sys.stdout, PLAN_COLUMNS, lineterminator="\n") if args.dry_run else None
    if plan is not None:
        plan.writeheader()
    done, failures = Counter(), 0
    try:
        for record in records:
            if plan is not None:
                plan.writerow({**{k: getattr(record, k) for k in PLAN_COLUMNS},
                               "confidence": "" if record.confidence is None else round(record.confidence, 6)})
            if record.ok:
                done[record.action] += 1
                done["renamed"] += record.note.startswith("renamed")
                done[f"label:{record.label}"] += record.action != "skip"
            else:
                failures += 1
                report_failure(record, bar)
    finally:
        if bar is not None:
            bar.close()
    summary = sort_summary(done, args)
    print(summary, file=sys.stderr if args.dry_run else sys.stdout)
    if failures:
        print(f"artstyle: {failures} of {len(inputs)} files could not be sorted and were left where they are",
              file=sys.stderr)
        return EXIT_SOME_FAILED
    return 0


def sort_summary(done: Counter, args) -> str:
    """'copied 12 files into DEST: anime 4, cartoon 5, human 3 (2 renamed, 3 already sorted)'."""
    count = sum(n for key, n in done.items() if key in PAST)
    labels = ", ".join(f"{key[len('label:'):]} {n}" for key, n in sorted(done.items()) if key.startswith("label:") and n)
    extra = ", ".join(f"{done[key]} {text}" for key, text in (("renamed", "renamed"), ("skip", "already sorted"))
                      if done[key])
    verb = f"would {args.mode}" if args.dry_run else PAST[args.mode]
    return (f"{verb} {count} files into {args.output}" + (f": {labels}" if labels else "")
            + (f" ({extra})" if extra else "") + (" - dry run, nothing changed" if args.dry_run else ""))


def run_undo(args) -> int:
    from ..sorting import undo_iter

    undone, refused = 0, 0
    for record in undo_iter(args.undo, dry_run=args.dry_run):
        if record.ok:
            undone += 1
            if args.dry_run:
                print(f"{record.action}\t{record.destination}\t{record.source}")
        else:
            refused += 1
            print(f"artstyle: error: {record.destination}: {record.error}", file=sys.stderr, flush=True)
    verb = "would undo" if args.dry_run else "undid"
    print(f"{verb} {undone} operations in {args.undo}" + (f"; {refused} refused (listed above)" if refused else ""))
    return EXIT_SOME_FAILED if refused else 0
