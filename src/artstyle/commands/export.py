"""``artstyle export RUN -o model.onnx``: ONNX for the torch-free predictor, with its model card
and a parity check against PyTorch (needs ``artstyle[train]``)."""

from __future__ import annotations

import logging

# Constants only: this module is imported to build the CLI parser, which must stay light.
DEFAULT_CALIBRATION_SIZE = 500
DEFAULT_HOLDOUT_SIZE = 500
DEFAULT_METHOD = "minmax"
DEFAULT_MIN_AGREEMENT = 0.98
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


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
    p.add_argument("--float-input", dest="pixel_input", action="store_false",
                   help="take normalised float32 NCHW input, for runtimes that preprocess for themselves "
                        "(default: uint8 NHWC pixels, normalised inside the model)")
    p.add_argument("--with-weights", action="store_true",
                   help="also copy the checkpoint beside the ONNX, for `predict --explain`")
    p.add_argument("--temperature", type=float, default=None,
                   help="divide the logits by this before softmax (default: from --crossval, else the "
                        "checkpoint's, fitted on its validation split, else 1)")
    p.add_argument("--crossval", metavar="DIR", default=None,
                   help="an `artstyle crossval` folder: its per-group table goes into the model card and its "
                        "temperature (fitted on held-out groups) calibrates the model")
    q = p.add_argument_group(
        "int8", "--int8 also writes MODEL.int8.onnx (+ its card): ONNX Runtime static quantisation, "
                "calibrated on real images and checked against the fp32 model on held-out ones")
    q.add_argument("--int8", action="store_true", help="also write an int8 model beside the fp32 one")
    q.add_argument("--calibration", metavar="DATA",
                   help="calibration images: a split folder (train.csv...), manifest CSV or image folder "
                        "(default: the run's training split)")
    q.add_argument("--calibration-size", type=int, default=DEFAULT_CALIBRATION_SIZE, metavar="N",
                   help=f"calibration images (default {DEFAULT_CALIBRATION_SIZE})")
    q.add_argument("--calibration-method", choices=CALIBRATION_METHODS, default=DEFAULT_METHOD,
                   help=f"how activation ranges are chosen (default {DEFAULT_METHOD})")
    q.add_argument("--holdout", metavar="DATA",
                   help="images for the int8 parity check (default: the test split of the run or of --calibration)")
    q.add_argument("--holdout-size", type=int, default=DEFAULT_HOLDOUT_SIZE, metavar="N",
                   help=f"held-out images compared (default {DEFAULT_HOLDOUT_SIZE})")
    q.add_argument("--min-agreement", type=float, default=DEFAULT_MIN_AGREEMENT,
                   help=f"smallest top-1 agreement with fp32 to accept (default {DEFAULT_MIN_AGREEMENT})")
    q.add_argument("--keep-fp32", action="append", default=[], metavar="PREFIX",
                   help="also keep in fp32 the convolutions whose weight names start with PREFIX (repeatable; "
                        "e.g. model.backbone.blocks.0.); the stem and the head always stay fp32")
    q.add_argument("--no-head-refit", dest="head_refit", action="store_false",
                   help="keep a probe run's fp32-fitted head (default: refit it on the int8 trunk's features "
                        "of the run's training split, to the fp32 model's answers)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..engine.export import export_onnx

    logging.basicConfig(level=logging.WARNING, format="artstyle: %(message)s")
    if args.int8:
        check_int8_args(args)  # before the export: a bad --calibration fails in a second, not after it
    card = export_onnx(args.run, args.output, opset=args.opset, parity_images=args.parity_images,
                       tolerance=args.tolerance, with_weights=args.with_weights,
                       temperature=args.temperature, cv_metrics=args.crossval, pixel_input=args.pixel_input)
    parity = card["parity"]
    print(f"wrote {args.output} ({card['onnx_bytes'] / 1e6:.1f} MB, sha256 {card['onnx_sha256'][:16]}...)")
    print(f"model card: {args.output[:-5]}.json  classes: {', '.join(card['classes'])}  "
          f"input: {card['image_size']}x{card['image_size']}  temperature: {card['temperature']:.3f}")
    print(f"parity vs PyTorch on {len(parity['images'])} images: max |dp| = {parity['max_abs_diff']:.1e} "
          f"(tolerance {parity['tolerance']:.0e}) - passed")
    if args.int8:
        write_int8(args)
    return 0


def check_int8_args(args) -> None:
    from ..errors import ArtstyleError
    from ..engine.quantize import images_from

    if args.calibration_size < 1 or args.holdout_size < 1:
        raise ArtstyleError("--calibration-size and --holdout-size must be at least 1")
    for data in (args.calibration, args.holdout):
        if data and not any(s.files for s in images_from(data).values()):
            raise ArtstyleError(f"{data}: no images found")


def write_int8(args) -> None:
    from ..infer.predictor import int8_path
    from ..engine.quantize import QuantSettings, quantize_model

    settings = QuantSettings(method=args.calibration_method, calibration_size=args.calibration_size,
                             keep_layers=tuple(args.keep_fp32))
    card = quantize_model(args.output, args.run, calibration=args.calibration, holdout=args.holdout,
                          settings=settings, holdout_size=args.holdout_size, min_agreement=args.min_agreement,
                          refit=args.head_refit)
    q = card["quantization"]
    accuracy = (f"; accuracy fp32 {q['accuracy_fp32']:.2%} -> int8 {q['accuracy_int8']:.2%}"
                if "accuracy_int8" in q else "")
    print(f"wrote {int8_path(args.output)} ({card['onnx_bytes'] / 1e6:.1f} MB): {q['calibration_method']} "
          f"calibration on {q['calibration_images']} images; vs fp32 on {q['holdout_images']} held-out images "
          f"of {q['holdout_source']}: "
          f"top-1 agreement {q['top1_agreement']:.2%}, max |dp| = {q['max_prob_diff']:.3f}{accuracy}")
    if q["head"]["refit_on_int8_features"]:
        print(f"head refitted on the int8 trunk's features of {q['head']['train_rows']} training rows "
              f"(C {q['head']['C']}, val accuracy {q['head']['val_acc']:.2%})")
