"""``artstyle predict --explain -o DIR``: Grad-CAM heatmaps over each image with the predicted
label, a grid figure per batch, and predictions.csv. The one predict path that needs torch
(the heatmaps are drawn by ``artstyle.engine.gradcam``)."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import EXIT_SOME_FAILED, ArtstyleError


def explain_command(args) -> int:
    """``artstyle predict --explain -o DIR``: heatmaps, grids and predictions.csv in DIR; the
    chosen format on stdout; failures one line each on stderr; exit 2 if any failed."""
    from ..engine.gradcam import card_temperature, explain, load_explainer
    from ..infer.sources import expand_inputs
    from ..infer.writers import open_writer

    inputs = expand_inputs(args.inputs)
    if not inputs:
        raise ArtstyleError(f"no images found in {' '.join(args.inputs)}")
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise ArtstyleError(f"{out_dir}: --explain writes into a folder, and this is a file")
    model, spec = load_explainer(args.model)
    fmt = args.format or ("table" if sys.stdout.isatty() else "csv")
    out_dir.mkdir(parents=True, exist_ok=True)
    failures = 0
    with open(out_dir / "predictions.csv", "w", encoding="utf-8", newline="") as csv_file:
        writers = [open_writer("csv", csv_file, spec.classes, args.top_k),
                   open_writer(fmt, sys.stdout, spec.classes, args.top_k)]
        try:
            for pred in explain(model, spec, inputs, out_dir, url_timeout=args.timeout,
                                max_download=int(args.max_download_mb * 1024 * 1024),
                                temperature=card_temperature(args.model),
                                allow_private_urls=args.allow_private_urls):
                for writer in writers:
                    writer.write(pred)
                if not pred.ok:
                    failures += 1
                    print(f"artstyle: error: {pred.source}: {pred.error}", file=sys.stderr, flush=True)
        finally:
            for writer in writers:
                writer.close()
    print(f"artstyle: heatmaps, grids and predictions.csv written to {out_dir}", file=sys.stderr)
    if failures:
        print(f"artstyle: {failures} of {len(inputs)} inputs could not be classified", file=sys.stderr)
        return EXIT_SOME_FAILED
    return 0
