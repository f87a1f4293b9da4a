"""``artstyle export RUN -o model.onnx``: ONNX for the torch-free predictor, with its model card
and a parity check against PyTorch (needs ``artstyle[train]``)."""

from __future__ import annotations

import logging


def register(sub) -> None:
    p = sub.add_parser(
        "export", help="export a trained run or checkpoint to ONNX (+ model card, parity-checked)",
        description="Export to ONNX with a dynamic batch. MODEL.json, the model card, is written beside "
                    "MODEL.onnx; nothing is written unless ONNX Runtime and PyTorch agree on real images.",
    )
    p.add_argument("run", metavar="RUN", help="a run directory (weights/best.safetensors) or a .safetensors checkpoint")
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    p.add_argument("--parity-images", nargs="+", metavar="PATH",
                   help="images or folders for the parity check (default: 16 from the training data)")
    p.add_argument("--tolerance", type=float, default=1e-4,
                   help="largest allowed probability difference, ONNX vs PyTorch (default 1e-4)")
    p.add_argument("--with-weights", action="store_true",
                   help="also copy the checkpoint beside the ONNX, for `predict --explain`")
    p.add_argument("--temperature", type=float, default=None,
                   help="divide the logits by this before softmax (default: from --crossval, else the "
                        "checkpoint's, fitted on its validation split, else 1)")
    p.add_argument("--crossval", metavar="DIR", default=None,
                   help="an `artstyle crossval` folder: its per-group table goes into the model card and its "
                        "temperature (fitted on held-out groups) calibrates the model")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..export import export_onnx

    logging.basicConfig(level=logging.WARNING, format="artstyle: %(message)s")
    card = export_onnx(args.run, args.output, opset=args.opset, parity_images=args.parity_images,
                       tolerance=args.tolerance, with_weights=args.with_weights,
                       temperature=args.temperature, cv_metrics=args.crossval)
    parity = card["parity"]
    print(f"wrote {args.output} ({card['onnx_bytes'] / 1e6:.1f} MB, sha256 {card['onnx_sha256'][:16]}...)")
    print(f"model card: {args.output[:-5]}.json  classes: {', '.join(card['classes'])}  "
          f"input: {card['image_size']}x{card['image_size']}  temperature: {card['temperature']:.3f}")
    print(f"parity vs PyTorch on {len(parity['images'])} images: max |dp| = {parity['max_abs_diff']:.1e} "
          f"(tolerance {parity['tolerance']:.0e}) - passed")
    return 0
