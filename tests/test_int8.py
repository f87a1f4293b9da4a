"""`artstyle export --int8` and the int8 predictor: ONNX Runtime static quantisation of a real
Lite0, calibrated on a run's real training images and checked against fp32 on its test split."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

for _extra in ("torch", "timm", "onnx"):  # exporting and quantising a model
    pytest.importorskip(_extra, reason="needs the train extra: pip install 'artstyle[train]'")

import artstyle  # noqa: E402
from artstyle.cli import main  # noqa: E402
from artstyle.commands import export as export_command  # noqa: E402
from artstyle.engine import export as export_module  # noqa: E402
from artstyle.engine import quantize  # noqa: E402
from artstyle.errors import ArtstyleError  # noqa: E402
from artstyle.infer.predictor import resolve_model  # noqa: E402
from predict_support import copy_model  # noqa: E402


@pytest.fixture(scope="module")
def run_with_split(exported, shared_subset, tmp_path_factory):
    """The session's exported Lite0 as a run directory that saved its split, as training does:
    RUN/weights/best.* and RUN/data/{train,val,test}.csv of real artstyle-v1 images."""
    from artstyle.engine.data import resolve_splits

    run = tmp_path_factory.mktemp("int8") / "run"
    shutil.copytree(exported.run / "weights", run / "weights")
    resolve_splits(shared_subset, run / "data", val=0.2, test=0.2, seed=0)
    return run


@pytest.fixture(scope="module")
def int8_export(run_with_split, exported, tmp_path_factory):
    """`artstyle export RUN -o model.onnx --int8` through the CLI; the fp32 graph is the
    session's (tracing again takes 20 s), everything else runs for real."""
    out = tmp_path_factory.mktemp("int8-model") / "model.onnx"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(export_module, "write_onnx", lambda model, size, path, opset, pixel_input=True: shutil.copyfile(exported.onnx, path))
        code = main(["export", str(run_with_split), "-o", str(out), "--int8", "--calibration-size", "16",
                     "--min-agreement", "0.5"])
    assert code == 0
    return out


def test_export_int8_writes_an_int8_model_and_card_beside_fp32(int8_export, run_with_split):
    int8 = int8_export.with_name("model.int8.onnx")
    card = json.loads(int8.with_suffix(".json").read_text())
    fp32_card = json.loads(int8_export.with_suffix(".json").read_text())
    assert card["precision"] == "int8" and "precision" not in fp32_card
    assert card["onnx_sha256"] == export_module.sha256_file(int8)
    assert int8.stat().st_size < int8_export.stat().st_size / 2  # int8 weights: a quarter, plus scales
    q = card["quantization"]
    assert q["format"] == "QDQ" and q["tool"] == "onnxruntime.quantization.quantize_static"
    assert q["calibration_method"] == "minmax" and q["calibration_images"] == 16
    assert str(run_with_split / "data") in q["calibration_source"] and "train split" in q["calibration_source"]
    assert "test split" in q["holdout_source"]
    assert q["fp32_model"] == "model.onnx" and q["fp32_onnx_sha256"] == fp32_card["onnx_sha256"]
    assert 0 <= q["max_prob_diff"] <= 1 and 0.5 <= q["top1_agreement"] <= 1
    assert q["fp32_nodes"] >= 2  # the stem and at least the classifier stay fp32
    # The graph really is quantised: int8 weights behind DequantizeLinear nodes.
    import onnx

    graph = onnx.load(str(int8)).graph
    assert sum(n.op_type == "DequantizeLinear" for n in graph.node) > 40
    assert any(t.data_type == onnx.TensorProto.INT8 for t in graph.initializer)


def test_card_figures_are_what_the_predictor_gives_on_the_test_split(int8_export, run_with_split):
    q = json.loads(int8_export.with_name("model.int8.json").read_text())["quantization"]
    test = [row["path"] for row in csv.DictReader(open(run_with_split / "data" / "test.csv"))]
    labels = [row["label"] for row in csv.DictReader(open(run_with_split / "data" / "test.csv"))]
    fp32 = artstyle.load(int8_export, precision="fp32").predict(test)
    int8 = artstyle.load(int8_export, precision="int8").predict(test)
    assert q["holdout_images"] == len(test) == q["labelled_images"]
    assert q["top1_agreement"] == pytest.approx(np.mean([a.label == b.label for a, b in zip(fp32, int8)]), abs=1e-3)
    assert q["accuracy_fp32"] == pytest.approx(np.mean([p.label == y for p, y in zip(fp32, labels)]), abs=1e-3)
    diff = max(abs(a.probs[c] - b.probs[c]) for a, b in zip(fp32, int8) for c in a.probs)
    assert diff == pytest.approx(q["max_prob_diff"], abs=2e-3)
    assert diff > 0  # it really is another model


def test_predict_precision_int8_and_fp32(int8_export, run_with_split, capsys):
    folder = run_with_split.parent / "images"
    folder.mkdir(exist_ok=True)
    for row in list(csv.DictReader(open(run_with_split / "data" / "test.csv")))[:4]:
        shutil.copyfile(row["path"], folder / row["path"].rsplit("/", 1)[-1])
    results = {}
    for precision in ("fp32", "int8"):
        code = main(["predict", str(folder), "--model", str(int8_export), "--precision", precision, "-f", "csv"])
        out, err = capsys.readouterr()
        assert code == 0 and err == ""
        results[precision] = list(csv.DictReader(io.StringIO(out)))
    assert [r["path"] for r in results["int8"]] == [r["path"] for r in results["fp32"]]
    assert len(results["int8"]) == 4 and all(r["label"] and not r["error"] for r in results["int8"])
    assert [r["p_anime"] for r in results["int8"]] != [r["p_anime"] for r in results["fp32"]]


def test_precision_picks_the_file_beside(int8_export):
    int8 = int8_export.with_name("model.int8.onnx")
    assert resolve_model(int8_export) == int8_export  # auto: the file named
    assert resolve_model(int8_export, "int8") == int8 and resolve_model(int8, "fp32") == int8_export
    assert resolve_model(int8_export.parent) == int8_export  # a folder holds one model, in two precisions
    assert artstyle.load(int8_export.parent, precision="int8").precision == "int8"


def test_int8_asked_where_there_is_none_is_one_line(exported, tmp_path):
    model = copy_model(exported, tmp_path)
    proc = subprocess.run([sys.executable, "-m", "artstyle", "predict", str(exported.images[0]), "--model", str(model),
                           "--precision", "int8"], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"artstyle: error: {model}: no int8 model beside it (model.int8.onnx); "
        f"make one with: artstyle export RUN -o model.onnx --int8"]


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_bad_calibration_folder_is_one_line_and_writes_nothing(run_with_split, tmp_path, make, capsys):
    data = tmp_path / "calib"
    if make == "empty":
        data.mkdir()
    out = tmp_path / "model.onnx"
    # Checked before the export starts, so this answers at once.
    code = main(["export", str(run_with_split), "-o", str(out), "--int8", "--calibration", str(data)])
    stdout, stderr = capsys.readouterr()
    assert code == 1 and stdout == ""
    reason = "calibration data not found" if make == "missing" else "no images found"
    assert stderr.strip().splitlines() == [f"artstyle: error: {data}: {reason}"]
    assert not out.exists()


def test_unreadable_calibration_images_are_refused(exported, run_with_split, bad_corpus, tmp_path):
    model = copy_model(exported, tmp_path / "m")
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("truncated_jpeg", "zero_byte", "text_as_jpg"):
        if name in bad_corpus:
            shutil.copyfile(bad_corpus[name], broken / bad_corpus[name].name)
    with pytest.raises(ArtstyleError, match=f"^{broken}: none of its .* images could be read$"):
        quantize.quantize_model(model, run_with_split, calibration=broken)
    assert not model.with_name("model.int8.onnx").exists()


def test_too_little_agreement_writes_nothing(exported, run_with_split, tmp_path):
    model = copy_model(exported, tmp_path)
    with pytest.raises(ArtstyleError, match="top-1 agreement with fp32 is .* no int8 model was written"):
        quantize.quantize_model(model, run_with_split, settings=quantize.QuantSettings(calibration_size=16),
                                min_agreement=1.01)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.onnx"]


def test_stem_and_head_stay_fp32(exported):
    import onnx

    graph = onnx.load(str(exported.onnx)).graph
    by_name = {n.name: n.op_type for n in graph.node}
    kept = quantize.fp32_nodes(exported.onnx)
    first_conv = next(n for n in graph.node if n.op_type == "Conv")
    # The stem: the first convolution, and the normalisation of the pixels before it.
    assert kept[0] == first_conv.name and "conv_stem" in first_conv.input[1]
    assert [by_name[n] for n in kept[1:]] == ["Transpose", "Cast", "Mul", "Add", "ReduceMean", "Reshape", "Gemm",
                                              "Softmax"]


def test_layers_named_with_keep_fp32_stay_fp32(exported):
    import onnx

    graph = onnx.load(str(exported.onnx)).graph
    first = next(n.input[1] for n in graph.node if n.op_type == "Conv" and "blocks.0." in n.input[1])
    prefix = first[: first.index("blocks.0.") + len("blocks.0.")]  # model.blocks.0. or model.backbone.blocks.0.
    block = [n.name for n in graph.node if n.op_type == "Conv" and n.input[1].startswith(prefix)]
    kept = quantize.fp32_nodes(exported.onnx, layers=(prefix,))
    assert block and set(block) <= set(kept) and not set(block) & set(quantize.fp32_nodes(exported.onnx))


def test_int8_weights_are_7_bit_wherever_a_gemm_sums_them_in_pairs(int8_export):
    """The exported int8 model's matrix-product convolutions have weights in [-64, 64], so that
    the 16-bit pair sums of CPUs without VNNI cannot saturate; depthwise ones keep all 8 bits."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(resolve_model(int8_export, "int8"))).graph
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8}
    depthwise = {f"{w}_quantized" for w in quantize.depthwise_weights(int8_export)}
    gemm = [w for name, w in weights.items() if name not in depthwise]
    assert gemm and all(-64 <= int(w.min()) and int(w.max()) <= 64 for w in gemm)
    assert max(int(np.abs(w).max()) for name, w in weights.items() if name in depthwise) > 64
    card = json.loads(resolve_model(int8_export, "int8").with_suffix(".json").read_text())
    assert card["quantization"]["reduce_range"] and "as_default" in card["quantization"]


def test_cli_defaults_are_the_library_defaults():
    # The CLI keeps its own copies so that building the parser imports nothing heavy.
    for name in ("DEFAULT_CALIBRATION_SIZE", "DEFAULT_HOLDOUT_SIZE", "DEFAULT_METHOD", "DEFAULT_MIN_AGREEMENT",
                 "CALIBRATION_METHODS"):
        assert getattr(export_command, name) == getattr(quantize, name), name


def test_server_serves_the_int8_model(int8_export, run_with_split):
    from fastapi.testclient import TestClient

    from artstyle.serve.app import create_app
    from artstyle.serve.settings import ServeSettings

    image = next(csv.DictReader(open(run_with_split / "data" / "test.csv")))["path"]
    expected = artstyle.load(int8_export, precision="int8").predict(image)
    with TestClient(create_app(ServeSettings(model=str(int8_export), precision="int8", threads=1))) as client:
        assert client.get("/healthz").json()["model"] == "model.int8.onnx"
        with open(image, "rb") as f:
            response = client.post("/v1/predict", files=[("files", ("x.jpg", f.read(), "image/jpeg"))])
    (answer,) = response.json()["results"]
    assert answer["label"] == expected.label
    assert answer["probabilities"] == pytest.approx(expected.probs, abs=1e-5)


def statistics_graph(path):
    """A tiny CNN whose head reads per-channel mean and std of a block's output, the way a
    style-statistics model does: Conv -> Clip -> Conv -> {mean, sqrt(mean(x*x) - mean^2)} -> Gemm."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = {"w1": rng.normal(0, 0.3, (8, 3, 3, 3)), "w2": rng.normal(0, 0.3, (8, 8, 3, 3)),
               "axes": np.array([2, 3]), "shape": np.array([0, -1]), "eps": np.array(1e-5),
               "fc": rng.normal(0, 0.3, (3, 16)), "fc_b": np.zeros(3)}
    inits = [numpy_helper.from_array(v.astype(np.int64 if k in ("axes", "shape") else np.float32), k)
             for k, v in weights.items()]
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["c1"], name="stem", pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["c1"], ["r1"], name="relu"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="block", pads=[1, 1, 1, 1]),
        helper.make_node("ReduceMean", ["c2", "axes"], ["mean"], name="mean", keepdims=0),
        helper.make_node("Mul", ["c2", "c2"], ["sq"], name="square"),
        helper.make_node("ReduceMean", ["sq", "axes"], ["mean_sq"], name="mean_sq", keepdims=0),
        helper.make_node("Mul", ["mean", "mean"], ["mean2"], name="mean2"),
        helper.make_node("Sub", ["mean_sq", "mean2"], ["var"], name="var"),
        helper.make_node("Add", ["var", "eps"], ["var_eps"], name="var_eps"),
        helper.make_node("Sqrt", ["var_eps"], ["std"], name="std"),
        helper.make_node("Concat", ["mean", "std"], ["stats"], name="stats", axis=1),
        helper.make_node("Gemm", ["stats", "fc", "fc_b"], ["logits"], name="head", transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(nodes, "stats", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 16, 16])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 3])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))


def test_statistics_head_stays_fp32(tmp_path):
    import onnx

    model = tmp_path / "stats.onnx"
    statistics_graph(model)
    calib = np.random.default_rng(1).normal(0, 1, (16, 3, 16, 16)).astype(np.float32)
    kept = quantize.quantize_file(model, tmp_path / "stats.int8.onnx", calib, "input", quantize.QuantSettings())
    assert kept[0] == "stem"
    assert set(kept[1:]) == {"mean", "mean_sq", "mean2", "var", "var_eps", "std", "stats", "head", "softmax"}
    graph = onnx.load(str(tmp_path / "stats.int8.onnx")).graph
    node = {n.name: n for n in graph.node}
    quantized = {i for n in graph.node if n.op_type == "QuantizeLinear" for i in n.input}
    # The trunk's block conv takes int8 weights; the stem and the head keep their fp32 weights.
    assert node["block"].input[1] != "w2" and node["stem"].input[1] == "w1" and node["head"].input[1] == "fc"
    # No statistic is rounded to int8 (the block's output is, as any quantised conv's output is).
    for name in kept[1:] + ["square"]:
        assert not set(node[name].output) & quantized, name
    fp32 = quantize.run_model(model, calib, "input")
    int8 = quantize.run_model(tmp_path / "stats.int8.onnx", calib, "input")
    assert np.abs(fp32 - int8).max() < 0.05


def test_calibration_folder_without_a_split_holds_out_the_rest(exported, shared_subset):
    weights = exported.run / "weights" / "best.safetensors"  # a run that saved no split
    with pytest.raises(ArtstyleError, match="no training split beside this checkpoint"):
        quantize.choose_images(weights, None, None, 8, 100)
    calib, held = quantize.choose_images(weights, shared_subset, None, 8, 100)
    assert len(calib.files) == 8 and len(held.files) == 60 - 8
    assert not set(calib.files) & set(held.files)
    assert set(held.labels) == {"anime", "cartoon", "human"}  # class folders give the accuracy check labels


PROBES = {  # head, backbone, ImageNet weights (ResNet has none offline: random init, named as such)
    "lite0-style": ("style", "efficientnet_lite0", True),
    "lite0-pooled": ("pooled", "efficientnet_lite0", True),
    "resnet18-pooled": ("pooled", "resnet18", False),  # timm calls its classifier `fc`
}


@pytest.fixture(scope="module", params=sorted(PROBES))
def probe_int8(request, shared_subset, tmp_path_factory):
    """A real probe run (frozen backbone, 48 px, one augmented view per image; the style head and
    the usual pooled one) exported with --int8 through the CLI, once with the head refitted on the
    int8 trunk (the default) and once with --no-head-refit."""
    from artstyle.engine.trainer import train

    head, backbone, pretrained = PROBES[request.param]
    root = tmp_path_factory.mktemp(f"{request.param}-int8")
    result = train(data=str(shared_subset), output=str(root / "run"), mode="probe", head=head, backbone=backbone,
                   pretrained=pretrained, balance="groups", probe_views=1, image_size=48, workers=0, batch_size=16)
    models = {}
    for name, extra in (("refit", []), ("plain", ["--no-head-refit"])):
        out = root / name / "model.onnx"
        assert main(["export", str(result.run_dir), "-o", str(out), "--int8", "--calibration-size", "16",
                     "--min-agreement", "0", *extra]) == 0
        models[name] = out
    return result.run_dir, models


def head_of(path) -> dict:
    import onnx
    from onnx import numpy_helper

    names = {"model.feature_mean", "model.feature_std"} | {f"model.{layer}.{p}" for layer in ("classifier", "fc")
                                                           for p in ("weight", "bias")}
    return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer if i.name in names}


def test_int8_export_refits_a_probe_head_on_the_int8_trunk(probe_int8):
    """The int8 graph's head is fitted, on what the int8 trunk computes, to the fp32 model's own
    answers for the same training views: its probabilities on the test split are those of that
    scikit-learn fit."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from artstyle.engine.checkpoint import load_model
    from artstyle.engine.data import read_split_dir
    from artstyle.engine.probe import MAX_ITER, sample_weights, with_views
    from artstyle.engine.quantize import feature_session, head_parameter_names, probe_config, view_batches
    from artstyle.engine.transforms import create_view_augmentation
    from artstyle.infer.predictor import create_session, read_model_bytes

    run, models = probe_int8
    int8 = models["refit"].with_name("model.int8.onnx")
    card = json.loads(int8.with_suffix(".json").read_text())
    head = card["quantization"]["head"]
    frames = read_split_dir(run / "data")
    assert head["refit_on_int8_features"] and head["train_rows"] == 2 * len(frames["train"])
    assert card["test_metrics"]["n"] == len(frames["test"])

    fp32_head, int8_head = head_of(models["refit"]), head_of(int8)
    model, spec, meta = load_model(run)
    assert fp32_head.keys() == int8_head.keys() and len(int8_head) == (4 if spec.head == "style" else 2)
    weight = next(k for k in int8_head if k.endswith(".weight"))
    assert not np.allclose(fp32_head[weight], int8_head[weight])
    # An independent fit: each training view once per class, weighted by the fp32 model's
    # probability of that class before its temperature (cross-entropy against fp32's answers) ...
    cfg, temperature = probe_config(meta), card["temperature"]
    session, augment = feature_session(int8, head_parameter_names(model)[0]), create_view_augmentation(cfg)
    fp32 = create_session(read_model_bytes(models["refit"]), models["refit"], None)
    train = with_views(frames["train"], 1)
    features, targets = [], []
    for x in view_batches(session, train, spec, augment, 0):
        features.append(session.run(None, {"pixels": x})[1])
        logits = temperature * np.log(fp32.run(None, {"pixels": x})[0])
        targets.append(np.exp(logits - logits.max(1, keepdims=True)))
    features, targets = np.concatenate(features), np.concatenate(targets)
    targets /= targets.sum(1, keepdims=True)
    k = len(spec.classes)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(C=meta["metrics"]["C"], max_iter=MAX_ITER))
    pipeline.fit(np.repeat(features, k, axis=0), np.tile(np.arange(k), len(features)),
                 logisticregression__sample_weight=targets.ravel() * np.repeat(sample_weights(train, "groups"), k))
    # ... answers as the int8 model does, end to end through the predictor, at the card's temperature.
    test_paths = frames["test"]["path"].tolist()
    test_features = np.concatenate([session.run(None, {"pixels": x})[1]
                                    for x in view_batches(session, frames["test"], spec, augment, 0)])
    expected = np.exp(pipeline.decision_function(test_features) / temperature)
    expected /= expected.sum(1, keepdims=True)
    got = np.array([[p.probs[c] for c in spec.classes] for p in artstyle.load(int8).predict(test_paths)])
    np.testing.assert_allclose(got, expected, atol=2e-3)


def test_no_head_refit_keeps_the_fp32_head(probe_int8):
    _, models = probe_int8
    card = json.loads(models["plain"].with_name("model.int8.json").read_text())
    assert card["quantization"]["head"] == {"refit_on_int8_features": False}
    kept, fp32 = head_of(models["plain"].with_name("model.int8.onnx")), head_of(models["plain"])
    assert kept.keys() == fp32.keys() and all(np.array_equal(kept[k], fp32[k]) for k in kept)
