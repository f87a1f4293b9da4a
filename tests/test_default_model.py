"""The shipped default model: the README's main job, its model card, and its accuracy on the
held-out slice of the real data (the file list its recipe wrote, recomputed here)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import artstyle
from artstyle.infer.predictor import DEFAULT_MODEL, int8_path, int8_validated_here
from artstyle.system import has_vnni, is_x86_64

EXAMPLES = Path(__file__).parents[1] / "examples"
SHARED = Path(__file__).parents[1].parent / "shared" / "data"
TEST_SPLIT = Path(__file__).parent / "data" / "default_test_split.csv"
CLASSES = ("anime", "cartoon", "human")
# Every image in examples/, named CLASS_name.ext after the class it is.
EXAMPLE_IMAGES = sorted(p for p in EXAMPLES.iterdir() if p.name != "README.md")


def expected_class(path: Path) -> str:
    return path.name.split("_", 1)[0]


def test_examples_cover_every_class_and_are_small():
    names = [p.name for p in EXAMPLE_IMAGES]
    assert {expected_class(p) for p in EXAMPLE_IMAGES} <= set(CLASSES), names
    for c in CLASSES:
        assert sum(expected_class(p) == c for p in EXAMPLE_IMAGES) >= 2, f"fewer than two {c} examples: {names}"
    assert all(p.stat().st_size < 150 * 1024 for p in EXAMPLE_IMAGES)


def test_every_example_is_credited_with_its_licence_in_the_readme():
    """examples/README.md has one table row per file: `file` | class | what | source | licence."""
    rows = {}
    for line in (EXAMPLES / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells
    assert sorted(rows) == [p.name for p in EXAMPLE_IMAGES]
    for name, (_, label, what, source, licence) in rows.items():
        assert label == expected_class(EXAMPLES / name), name
        assert what and source and licence, f"{name}: a cell is empty"


@pytest.fixture(scope="module", params=["default", "fp32"])
def examples_csv(request) -> dict[str, dict]:
    """The README's main command, run for real (offline, default model), as it stands and in fp32."""
    precision = [] if request.param == "default" else ["--precision", request.param]
    done = subprocess.run([sys.executable, "-m", "artstyle", "predict", str(EXAMPLES), "--format", "csv", *precision],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return {Path(row["path"]).name: row for row in csv.DictReader(io.StringIO(done.stdout))}


@pytest.mark.parametrize("path", EXAMPLE_IMAGES, ids=lambda p: p.name)
def test_main_job_classifies_the_bundled_examples(examples_csv, path):
    row = examples_csv[path.name]
    assert row["error"] == ""
    assert abs(sum(float(row[f"p_{c}"]) for c in CLASSES) - 1) < 1e-4
    assert row["label"] == expected_class(path), f"{path.name}: {row['label']} at {row['confidence']}"


def test_model_card_matches_the_shipped_file():
    card = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    data = DEFAULT_MODEL.read_bytes()
    assert hashlib.sha256(data).hexdigest() == card["onnx_sha256"]
    assert len(data) <= 25 * 1024 * 1024
    assert card["classes"] == ["anime", "cartoon", "human"] and card["init"].startswith("imagenet")
    assert card["parity"]["passed"] and len(card["parity"]["images"]) == 16  # real training images
    assert sum(card["training"]["data_summary"]["train"].values()) > 8000
    # Leave-sources-out figures and the temperature fitted on those held-out sources.
    cv = card["crossval"]
    assert cv["folds"] == 5 and len(cv["groups"]) == 67 and cv["n"] == 12702
    assert card["temperature"] == cv["temperature"] > 1


def test_int8_card_and_what_auto_runs():
    """The int8 model was exported with its fp32 model and measured against it on the held-out
    slice; `predict` runs it by default only where its card says the shipping rule (top-1
    agreement of at least 99.5 %, no more than 0.3 points of accuracy lost) is met."""
    int8 = int8_path(DEFAULT_MODEL)
    card, fp32_card = json.loads(int8.with_suffix(".json").read_text()), json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    assert hashlib.sha256(int8.read_bytes()).hexdigest() == card["onnx_sha256"]
    q = card["quantization"]
    rule_met = q["top1_agreement"] >= 0.995 and q["accuracy_int8"] >= q["accuracy_fp32"] - 0.003
    assert q["as_default"]["met"] == rule_met
    assert artstyle.load().precision == ("int8" if is_x86_64() and rule_met else "fp32")
    assert artstyle.load(precision="fp32").precision == "fp32"
    assert q["top1_agreement"] >= q["min_agreement"]
    assert q["fp32_onnx_sha256"] == fp32_card["onnx_sha256"]  # the pair was exported together
    assert q["head"]["refit_on_int8_features"] and q["holdout_images"] == fp32_card["test_metrics"]["n"]
    assert card["temperature"] == fp32_card["temperature"] and card["crossval"] == fp32_card["crossval"]


@pytest.fixture(scope="module")
def held_out_slice():
    """The images the recipe held out (sources seen in training), as paths and labels."""
    pd = pytest.importorskip("pandas", reason="reading the slice's list needs the data extra: pip install 'artstyle[data]'")

    if not (SHARED / "artstyle-v3").is_dir():
        pytest.skip(f"real data not present at {SHARED / 'artstyle-v3'}")
    test = pd.read_csv(TEST_SPLIT)
    return [str(SHARED / p) for p in test["path"]], list(test["label"])


def test_fp32_default_model_on_the_held_out_slice_of_the_real_data(held_out_slice):
    """In-distribution accuracy, recomputed on the images the recipe held out: the fp32 card's
    figure must be what its shipped file really does (fp32 answers do not depend on the CPU)."""
    paths, labels = held_out_slice
    classifier = artstyle.load(precision="fp32")
    correct = sum(p.label == label for p, label in zip(classifier.predict(paths), labels))
    assert len(paths) == classifier.card["test_metrics"]["n"] == 1269
    assert correct / len(paths) == pytest.approx(classifier.card["test_metrics"]["accuracy"], abs=1e-4)
    assert correct / len(paths) >= 0.97


def test_int8_matches_fp32_on_this_cpu_as_on_the_exporting_one(held_out_slice):
    """int8 against fp32, measured here and now on the held-out slice, gives what the export
    measured on its own CPU: with 7-bit GEMM weights every x86-64 CPU computes the same answers,
    VNNI or not. The accuracies are this machine's, not copied from the card."""
    paths, labels = held_out_slice
    fp32 = artstyle.load(precision="fp32").predict(paths)
    int8 = artstyle.load(precision="int8").predict(paths)
    agreement = np.mean([a.label == b.label for a, b in zip(fp32, int8)])
    accuracy = {name: np.mean([p.label == label for p, label in zip(rows, labels)])
                for name, rows in (("fp32", fp32), ("int8", int8))}
    q = json.loads(int8_path(DEFAULT_MODEL).with_suffix(".json").read_text())["quantization"]
    assert agreement == pytest.approx(q["top1_agreement"], abs=1.5 / len(paths)), agreement
    assert accuracy["int8"] == pytest.approx(q["accuracy_int8"], abs=1.5 / len(paths)), accuracy
    assert accuracy["int8"] >= accuracy["fp32"] - 0.003, accuracy


def test_auto_precision_takes_int8_only_where_it_was_measured_as_accurate():
    """auto runs int8 only if its export found it as accurate as fp32; with 8-bit weights that
    was measured on a VNNI CPU, so only there; 7-bit weights hold on any x86-64 CPU."""
    met, not_met = {"met": True}, {"met": False}
    eight_bit = {"quantization": {"reduce_range": False, "as_default": met}}
    seven_bit = {"quantization": {"reduce_range": True, "as_default": met}}
    assert int8_validated_here(seven_bit)[0] == is_x86_64()
    assert int8_validated_here(eight_bit)[0] == (is_x86_64() and has_vnni())
    assert not int8_validated_here({"quantization": {"reduce_range": True, "as_default": not_met}})[0]


def test_int8_weights_cannot_saturate_without_vnni():
    """Every int8 weight that ONNX Runtime multiplies in a GEMM lies in the 7-bit range [-64, 64].
    Without VNNI, x86 GEMM kernels sum pairs of u8 x s8 products in 16 bits: 255 * 64 * 2 = 32,640
    fits in 32,767, so no sum can saturate and every x86-64 CPU gets the same answers. Depthwise
    convolutions keep 8 bits: their kernel widens to 16 bits and sums in 32."""
    onnx = pytest.importorskip("onnx", reason="reading the graph's initializers needs onnx (artstyle[train])")
    from onnx import numpy_helper

    from artstyle.engine.quantize import depthwise_weights

    path = int8_path(DEFAULT_MODEL)
    graph = onnx.load(path).graph
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8}
    quantised = {n.input[0] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in weights}
    depthwise = {f"{w}_quantized" for w in depthwise_weights(DEFAULT_MODEL)} & quantised
    assert len(quantised) >= 30 and depthwise  # the trunk's convolutions, but those kept in fp32
    gemm = [weights[w] for w in quantised - depthwise]
    assert min(int(w.min()) for w in gemm) >= -64 and max(int(w.max()) for w in gemm) <= 64
    assert max(int(np.abs(weights[w]).max()) for w in depthwise) > 64
    assert json.loads(path.with_suffix(".json").read_text())["quantization"]["reduce_range"]
