"""What one exported model costs against another: speed side by side in one run.

    python bench/bench_models.py NAME FIRST.onnx SECOND.onnx [...] [--images 1000] [--rounds 4]

For each model, and its int8 version beside it (M.int8.onnx) when there is one: ONNX Runtime on
the model alone (pre-decoded batches of 32, as the predictor runs them) and the in-process
predictor end to end (decode, preprocess, model), on the same images. The images are cut into
--rounds chunks and every path runs on each chunk in turn, the order rotating, so all models see
the same machine. Each path gets a fresh classifier per chunk (see bench_predict.fresh). Ratios
are each model's images/s over the first model's, at the same precision and path: what a recipe
with a bigger input or backbone costs. Writes bench/results/models_NAME.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _provenance import write_results
from bench_predict import DEFAULT_DATA, REPO, interleaved, model_only_runner, pick_images, predictor_runner

import artstyle
from artstyle.infer.predictor import int8_path, read_card


def paths_of(model: Path) -> dict:
    """The model's paths to time, by name: fp32, and int8 where its file exists."""
    loads = {"fp32": lambda: artstyle.load(model, precision="fp32")}
    if int8_path(model).is_file():
        loads["int8"] = lambda: artstyle.load(int8_path(model))
    return loads


def describe(model: Path) -> dict:
    card = read_card(model)
    return {"path": str(model), "arch": card.get("arch"), "image_size": card.get("image_size"),
            "onnx_sha256": card.get("onnx_sha256"), "int8": int8_path(model).is_file()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="the result's name: bench/results/models_NAME.json")
    parser.add_argument("models", nargs="+", type=Path, help="exported .onnx files with their cards; the first is the base")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    args = parser.parse_args()
    if len(args.models) < 2:
        parser.error("give at least two models")

    files = pick_images(Path(args.data), args.images)
    chunks = [files[i::args.rounds] for i in range(args.rounds)]
    described = [describe(model) for model in args.models]
    runners = {}
    for m, model in enumerate(args.models):
        for precision, load in paths_of(model).items():
            runners[(m, precision, "model_only")] = model_only_runner(load, files)
            runners[(m, precision, "end_to_end")] = predictor_runner(load, {})
    totals = interleaved(runners, chunks, [None] * len(chunks))
    speed = {(m, p, path): count / seconds for (m, p, path), (seconds, count) in totals.items()}
    results = [{"model": described[m], "label": f"{described[m]['arch']} {described[m]['image_size']} px",
                "images_per_s": {f"{p}_{path}": round(v, 1) for (i, p, path), v in speed.items() if i == m},
                "over_first": {f"{p}_{path}": round(v / speed[(0, p, path)], 3)
                               for (i, p, path), v in speed.items() if i == m and (0, p, path) in speed}}
               for m, model in enumerate(args.models)]
    info = {"images": len(files), "rounds": args.rounds, "data": str(args.data), "batch": 32, "models": results}
    write_results(REPO / "bench" / "results" / f"models_{args.name}.json", info)
    for row in results:
        print(f"{row['label']}: {row['images_per_s']} images/s; over the first: {row['over_first']}")


if __name__ == "__main__":
    main()
