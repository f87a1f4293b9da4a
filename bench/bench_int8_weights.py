"""What 7-bit int8 weights cost: speed and answers of two int8 versions of one fp32 model.

    python bench/bench_int8_weights.py [--model MODEL.onnx] [--before EIGHT_BIT.int8.onnx] [--rounds 8]

Compares, side by side in one run, the fp32 model, the int8 model beside it (7-bit weights,
``reduce_range``) and an int8 model with 8-bit weights: ``--before``, or else its twin made here
with the same settings as the int8 model's card (calibration, layers kept fp32, head refit on
the run named by the card's ``source_checkpoint``) but 8-bit weights. Model-only images/s at batch 32
with every model's rounds interleaved, so that all three see the same machine; and, on the
held-out slice the model card names (tests/data/default_test_split.csv for the shipped model),
top-1 agreement with fp32 and accuracy. Without VNNI, x86 int8 kernels sum pairs of u8 x s8
products in 16 bits: 8-bit weights can saturate there, 7-bit ones cannot. Writes
bench/results/int8_weights.json with the machine's instruction sets.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from _provenance import write_results  # noqa: E402
from bench_quantize import probs, session, speed  # noqa: E402

from artstyle.engine.quantize import agreement, depthwise_weights  # noqa: E402
from artstyle.infer.predictor import DEFAULT_MODEL, int8_path  # noqa: E402
from artstyle.system import cpu_count  # noqa: E402

RESULTS = REPO / "bench" / "results" / "int8_weights.json"
TEST_SPLIT = REPO / "tests" / "data" / "default_test_split.csv"
SHARED = REPO.parent / "shared" / "data"


def held_out(model: Path) -> tuple[np.ndarray, list[str]]:
    """The shipped model's held-out slice, as ``model``'s input, and its labels."""
    import pandas as pd

    import artstyle

    test = pd.read_csv(TEST_SPLIT)
    clf = artstyle.load(model, precision="fp32")
    return np.stack([clf.to_array(SHARED / p) for p in test["path"]]), list(test["label"])


def weight_range(path: Path, depthwise: set[str]) -> dict:
    """The smallest and largest int8 weight, in GEMM convolutions and in depthwise ones."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(path).graph
    weights = {t.name: t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8}
    arrays = {n.input[0]: numpy_helper.to_array(weights[n.input[0]]) for n in graph.node
              if n.op_type == "DequantizeLinear" and n.input[0] in weights}
    kinds = {"gemm": [a for name, a in arrays.items() if name not in depthwise],
             "depthwise": [a for name, a in arrays.items() if name in depthwise]}
    return {kind: [int(min(a.min() for a in found)), int(max(a.max() for a in found))]
            for kind, found in kinds.items() if found}


def eight_bit_twin(model: Path, work: Path) -> Path:
    """The shipped int8 model's settings with 8-bit weights everywhere: quantised from a copy of
    ``model`` (and its card and checkpoint) in ``work``, its head refitted like the export's."""
    from artstyle.engine.quantize import QuantSettings, quantize_model

    q = json.loads(int8_path(model).with_suffix(".json").read_text())["quantization"]
    kept = [k for k in q["keep_fp32"] if k not in ("stem", "head")]
    for suffix in (".onnx", ".json", ".safetensors"):
        shutil.copy(model.with_suffix(suffix), work / f"model{suffix}")
    settings = QuantSettings(method=q["calibration_method"], calibration_size=q["calibration_images"],
                             keep_stem="stem" in q["keep_fp32"], keep_head="head" in q["keep_fp32"],
                             keep_layers=tuple(kept), reduce_range=False)
    quantize_model(work / "model.onnx", settings=settings, holdout_size=q["holdout_images"], min_agreement=0.0,
                   refit=q["head"]["refit_on_int8_features"])
    return int8_path(work / "model.onnx")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="the fp32 .onnx; its .int8.onnx has 7-bit weights")
    parser.add_argument("--before", help="an int8 .onnx of the same model with 8-bit weights (default: made here)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--threads", type=int, default=cpu_count())
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args()

    model = Path(args.model)
    card = json.loads(model.with_suffix(".json").read_text())
    work = tempfile.TemporaryDirectory(prefix="bench-int8-weights-")
    before = Path(args.before) if args.before else eight_bit_twin(model, Path(work.name))
    paths = {"fp32": model, "int8_8bit": before, "int8_7bit": int8_path(model)}
    batch, labels = held_out(model)
    depthwise = {f"{w}_quantized" for w in depthwise_weights(model)}
    fp32 = probs(session(model, args.threads), batch)
    info = {"model": str(model), "threads": args.threads, "batch": 32,
            "rounds": args.rounds, "holdout": f"{TEST_SPLIT.relative_to(REPO)}: {len(batch)} images",
            "weight_range": {k: weight_range(p, depthwise) for k, p in paths.items() if k != "fp32"},
            "parity": {k: agreement(fp32, probs(session(p, args.threads), batch), labels, card["classes"])
                       for k, p in paths.items() if k != "fp32"}}
    info["images_per_s"] = speed(paths, batch, args.threads, rounds=args.rounds)
    ips = info["images_per_s"]
    info["int8_over_fp32"] = {k: round(ips[k] / ips["fp32"], 3) for k in ("int8_8bit", "int8_7bit")}
    info["cost_of_7bit"] = round(ips["int8_7bit"] / ips["int8_8bit"], 3)
    write_results(args.results, info)
    print(json.dumps({k: info[k] for k in ("weight_range", "images_per_s", "int8_over_fp32", "cost_of_7bit")}, indent=1))
    for k, p in info["parity"].items():
        print(k, {m: p[m] for m in ("top1_agreement", "accuracy_fp32", "accuracy_int8") if m in p})


if __name__ == "__main__":
    main()
