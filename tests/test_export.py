"""`artstyle export`: ONNX with dynamic batch, model card, parity with PyTorch on real images."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch", reason="needs the train extra: pip install 'artstyle[train]'")
for _extra in ("timm", "onnx", "safetensors"):
    pytest.importorskip(_extra, reason="needs the train extra: pip install 'artstyle[train]'")

from artstyle import __version__  # noqa: E402
from artstyle.cli import main  # noqa: E402
from artstyle.engine import export as export_module  # noqa: E402
from artstyle.engine.checkpoint import load_model, save_model  # noqa: E402
from artstyle.engine.export import check_parity, export_onnx  # noqa: E402
from artstyle.errors import ArtstyleError  # noqa: E402
from artstyle.images import open_image  # noqa: E402
from artstyle.preprocess import crop_pixels, normalize, pixels_from_normalized  # noqa: E402
from predict_support import CLASSES, IMAGE_SIZE  # noqa: E402


@pytest.fixture(scope="module")
def torch_model(exported):
    """The checkpoint in PyTorch (do not modify: shared by the tests of this module)."""
    return load_model(exported.run)


def fast_export(monkeypatch, exported):
    """Reuse the session's ONNX instead of re-tracing (20 s): the rest of export runs for real."""
    monkeypatch.setattr(export_module, "write_onnx", lambda model, size, path, opset, pixel_input=True: shutil.copyfile(exported.onnx, path))


def test_card_records_model_preprocessing_and_provenance(exported):
    card = json.loads(exported.onnx.with_suffix(".json").read_text())
    assert card == exported.card
    assert card["classes"] == CLASSES and card["image_size"] == IMAGE_SIZE
    assert card["mean"] == [0.5, 0.5, 0.5] and card["std"] == [0.5, 0.5, 0.5] and card["crop_pct"] == 1.0
    assert card["backbone"] == "efficientnet_lite0" and card["arch"] == "tf_efficientnet_lite0"
    assert card["init"].startswith("imagenet")
    assert card["metrics"] == {"val_acc": 0.5} and card["test_metrics"] == {"accuracy": 0.4}
    assert card["training"]["data_summary"] == {"train": {"anime": 2}} and card["training"]["epoch"] == 1
    assert card["artstyle_version"] == __version__
    assert card["onnx_sha256"] == hashlib.sha256(exported.onnx.read_bytes()).hexdigest()
    assert card["weights_sha256"] == hashlib.sha256(exported.onnx.with_suffix(".safetensors").read_bytes()).hexdigest()
    parity = card["parity"]
    assert parity["passed"] and parity["max_abs_diff"] <= 1e-4 and parity["argmax_agree"]
    # Up to 16 parity images, spread over everything given.
    assert len(parity["images"]) == min(16, len(exported.images))
    assert set(parity["images"]) <= {p.name for p in exported.images}


def test_a_new_export_removes_an_int8_model_made_from_the_old_one(exported, tmp_path, monkeypatch, caplog):
    fast_export(monkeypatch, exported)
    out = tmp_path / "model.onnx"
    export_onnx(exported.run, out, parity_images=exported.images)
    stale, kept = tmp_path / "model.int8.onnx", {"quantization": {"fp32_onnx_sha256": "0" * 64}}
    shutil.copyfile(out, stale)
    stale.with_suffix(".json").write_text(json.dumps(kept))
    export_onnx(exported.run, out, parity_images=exported.images)  # a model made from another fp32 one
    assert not stale.exists() and not stale.with_suffix(".json").exists()
    assert "removed" in caplog.text and "--int8" in caplog.text
    # One made from this very file stays.
    shutil.copyfile(out, stale)
    stale.with_suffix(".json").write_text(json.dumps({"quantization": {"fp32_onnx_sha256": sha(out)}}))
    export_onnx(exported.run, out, parity_images=exported.images)
    assert stale.exists()


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_exported_file_carries_no_local_paths(exported):
    """The exporter's per-node stack traces name this machine's files; a shipped model must not
    (and its sha256 must not change when an unrelated line of the exporting code moves)."""
    import onnx

    data = exported.onnx.read_bytes()
    assert str(exported.run).encode() not in data and b"site-packages" not in data and b".py\"" not in data
    assert not any(node.metadata_props or node.doc_string for node in onnx.load(str(exported.onnx)).graph.node)


def test_batch_dimension_is_dynamic(exported):
    session = ort.InferenceSession(str(exported.onnx), providers=["CPUExecutionProvider"])
    assert isinstance(session.get_inputs()[0].shape[0], str)
    for batch in (1, 3, 7):
        probs = session.run(None, {"pixels": np.zeros((batch, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)})[0]
        assert probs.shape == (batch, 3)
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)


def test_onnx_matches_pytorch_on_real_images(exported, torch_model):
    """The export takes the decoded pixels and normalises them in the graph; PyTorch gets them
    normalised by numpy, as evaluation does. Both must give the same probabilities."""
    model, spec, _ = torch_model
    pixels = np.stack([crop_pixels(open_image(p), spec.image_size, spec.crop_pct) for p in exported.images])
    batch = np.stack([normalize(p, spec.mean, spec.std) for p in pixels])
    with torch.inference_mode():
        expected = torch.softmax(model(torch.from_numpy(batch)), 1).numpy()
    session = ort.InferenceSession(str(exported.onnx), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(uint8)" and exported.card["input"]["layout"] == "NHWC"
    got = session.run(None, {"pixels": pixels})[0]
    assert np.abs(got - expected).max() <= 1e-4
    np.testing.assert_array_equal(pixels_from_normalized(batch, spec.mean, spec.std), pixels)


def test_float_input_export_gives_the_same_answers(exported, tmp_path):
    """``--float-input``: normalised float32 NCHW in, for runtimes that preprocess for
    themselves (and every export before PREPROCESS_VERSION 2); the predictor feeds either kind
    and gets the same probabilities."""
    import artstyle

    out = tmp_path / "float" / "model.onnx"
    assert main(["export", str(exported.run), "-o", str(out), "--float-input",
                 "--parity-images", *map(str, exported.images[:3])]) == 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["input"] == {"name": "input", "shape": ["batch", 3, IMAGE_SIZE, IMAGE_SIZE], "dtype": "float32",
                             "layout": "NCHW"}
    floats, pixels = artstyle.load(out), artstyle.load(exported.onnx)
    assert not floats.pixel_input and pixels.pixel_input
    assert floats.to_array(exported.images[0]).dtype == np.float32
    got = [[p.probs[c] for c in p.probs] for p in floats.predict(exported.images)]
    expected = [[p.probs[c] for c in p.probs] for p in pixels.predict(exported.images)]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_parity_failure_writes_nothing(exported, torch_model, tmp_path, monkeypatch):
    # A checkpoint whose head differs from the ONNX graph's must be caught by the check.
    model, spec, _ = torch_model
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["classifier.bias"] += torch.tensor([2.0, 0.0, -2.0])
    changed = copy.deepcopy(model)
    changed.load_state_dict(state)
    save_model(tmp_path / "run" / "weights" / "best", changed, spec, metrics={})
    fast_export(monkeypatch, exported)
    with pytest.raises(ArtstyleError, match="parity check failed"):
        export_onnx(tmp_path / "run", tmp_path / "out" / "model.onnx", parity_images=exported.images[:3])
    assert not list((tmp_path / "out").iterdir())


def test_check_parity_reports_the_difference(exported, torch_model):
    model, spec, _ = torch_model
    wrapped = export_module.ProbabilityModel(model, 1.0, spec.mean, spec.std).eval()
    batch = np.zeros((2, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    assert check_parity(wrapped, exported.onnx, batch, 1e-4)["passed"]
    with pytest.raises(ArtstyleError, match="differ by"):
        check_parity(wrapped, exported.onnx, batch, -1.0)


def test_cli_export_prints_summary(exported, tmp_path, monkeypatch, capsys):
    fast_export(monkeypatch, exported)
    out = tmp_path / "cli" / "m.onnx"
    assert main(["export", str(exported.run), "-o", str(out), "--parity-images", str(exported.images[0].parent)]) == 0
    printed = capsys.readouterr().out
    assert "parity vs PyTorch on 6 images" in printed and "passed" in printed
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["onnx_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert not out.with_suffix(".safetensors").exists()  # only with --with-weights


def test_cli_export_errors_are_one_line(tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing"), "-o", str(tmp_path / "m.onnx")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "checkpoint not found" in err
    assert main(["export", str(tmp_path), "-o", str(tmp_path / "m.txt")]) == 1
    assert "must be a .onnx" in capsys.readouterr().err


def test_a_model_exported_for_older_preprocessing_is_flagged(exported, tmp_path, caplog):
    """Exports before PREPROCESS_VERSION 2 were validated on Pillow's resize; loading one says so."""
    import artstyle

    card = dict(exported.card, preprocess={k: v for k, v in exported.card["preprocess"].items() if k != "version"})
    shutil.copyfile(exported.onnx, tmp_path / "old.onnx")
    (tmp_path / "old.json").write_text(json.dumps(card))
    with caplog.at_level("WARNING", logger="artstyle"):
        artstyle.load(exported.onnx)
        assert "Re-export" not in caplog.text
        artstyle.load(tmp_path / "old.onnx")
    assert "old.onnx was exported for preprocessing version 1" in caplog.text and "Re-export" in caplog.text
