"""``artstyle evaluate MODEL_OR_RUN DATA_OR_CSV -o eval/``."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="metrics, predictions and figures for a model on labelled images")
    p.add_argument("model", help="run directory, checkpoint (.safetensors) or exported model (.onnx with its card)")
    p.add_argument("data", help="data dir, split dir (uses test.csv) or CSV with path,label")
    p.add_argument("-o", "--output", default="eval", help="output folder (default: eval)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=-1, help="data-loader processes (-1 = auto)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..engine import evaluate

    evaluate(args.model, args.data, args.output, batch_size=args.batch_size, workers=args.workers,
             device=args.device)
    print(f"report: {args.output}/report.md")
    return 0
