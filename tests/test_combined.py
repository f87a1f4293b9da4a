"""Two backbones on one picture (``--backbone efficientnet_lite0+efficientnet_lite2``): the style
head reads both, the model trains by probe, checkpoints, exports to ONNX and explains itself like
a single backbone, and what cannot work is refused in one line. Real weights, real images."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs the train extra: pip install 'artstyle[train]'")
pytest.importorskip("timm", reason="needs the train extra: pip install 'artstyle[train]'")
pd = pytest.importorskip("pandas", reason="needs the data extra: pip install 'artstyle[data]'")

from predict_support import real_images  # noqa: E402
from test_groups import grouped_data, grouped_manifest  # noqa: E402, F401 - fixtures

from artstyle.engine.gradcam import grad_cam  # noqa: E402
from artstyle.errors import ArtstyleError  # noqa: E402
from artstyle.infer.predictor import load_crop  # noqa: E402
from artstyle.models import create_model, rebuild_model  # noqa: E402
from artstyle.models.style import style_statistics  # noqa: E402

CLASSES = ["anime", "cartoon", "human"]
PAIR = "efficientnet_lite0+efficientnet_lite2"
SIZE = 64
REPO = Path(__file__).parents[1]


def batch_of_real_images(spec) -> torch.Tensor:
    images = real_images(per_class=1)
    assert images, "no real images found in examples/"
    pixels = np.stack([load_crop(path, image_size=spec.image_size) for path in images]).astype(np.float32) / 255
    x = (pixels - np.array(spec.mean, np.float32)) / np.array(spec.std, np.float32)
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="module")
def pair():
    model, spec = create_model(PAIR, CLASSES, image_size=SIZE, head="style")
    return model.eval(), spec


def test_the_pair_reads_each_backbones_style_statistics_side_by_side(pair):
    model, spec = pair
    assert spec.arch == "tf_efficientnet_lite0+tf_efficientnet_lite2"
    assert spec.init.count("imagenet") == 2  # both backbones' packaged ImageNet weights
    x = batch_of_real_images(spec)
    alone = [create_model(name, CLASSES, image_size=SIZE, head="style")[0].eval() for name in PAIR.split("+")]
    with torch.no_grad():
        together = style_statistics(model.backbone, x)
        expected = torch.cat([style_statistics(m.backbone, x) for m in alone], 1)
    assert together.shape == (len(x), model.num_features) == expected.shape
    torch.testing.assert_close(together, expected)


def test_the_pair_rebuilds_from_its_spec_and_gives_the_same_answers(pair):
    model, spec = pair
    rebuilt = rebuild_model(spec)
    rebuilt.load_state_dict(model.state_dict())  # strict: every key of both backbones
    x = batch_of_real_images(spec)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), model(x))


def test_grad_cam_explains_the_pair_with_both_backbones_maps(pair):
    model, spec = pair
    x = batch_of_real_images(spec)
    probs, heats = grad_cam(model, x)
    assert probs.shape == (len(x), 3) and heats.shape == (len(x), SIZE // 32, SIZE // 32)
    peaks = heats.max((1, 2))
    # Each map is scaled to a peak of 1, or all 0 where no region raises the (untrained) score.
    assert np.isfinite(heats).all() and heats.min() >= 0 and np.isin(peaks.round(6), [0, 1]).all()
    assert (peaks == 1).any()


def test_the_pair_exports_to_onnx_that_matches_pytorch(pair, tmp_path):
    import onnxruntime as ort

    from artstyle.engine.checkpoint import save_model
    from artstyle.engine.export import export_onnx

    model, spec = pair
    save_model(tmp_path / "run" / "weights" / "best", model, spec, metrics={"val_acc": 0.5}, epoch=1,
               config={"data": "/nowhere"}, data_summary={"train": {"anime": 2}}, test_metrics={"accuracy": 0.4})
    card = export_onnx(tmp_path / "run", tmp_path / "pair.onnx", parity_images=real_images(per_class=1))
    assert card["arch"] == spec.arch
    pixels = np.stack([load_crop(path, image_size=spec.image_size) for path in real_images(per_class=1)])
    with torch.no_grad():
        expected = torch.softmax(model(batch_of_real_images(spec)), 1).numpy()
    session = ort.InferenceSession(str(tmp_path / "pair.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"pixels": pixels})[0]
    assert np.abs(got - expected).max() <= 1e-4


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "artstyle", *args], capture_output=True, text=True, timeout=900,
                          env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "2"})


def test_crossval_probes_the_pair_on_held_out_sources(grouped_manifest, tmp_path):  # noqa: F811
    out = tmp_path / "cv"
    done = run_cli("crossval", str(grouped_manifest), "--folds", "3", "--image-size", "48", "--head", "style",
                   "--backbone", PAIR, "--balance", "groups", "--workers", "0", "--no-progress", "-o", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["backbone"] == PAIR and metrics["n"] == 48
    assert metrics["mean_accuracy"] > 0.45  # three classes: chance is 1/3
    from safetensors.numpy import load_file

    # Each backbone's features under its own key: what a crossval of either backbone alone reuses.
    widths = sorted(load_file(str(cache))["features"].shape[1] for cache in (out / "features").glob("*.safetensors"))
    alone = sorted(create_model(name, CLASSES, image_size=48, head="style")[0].num_features for name in PAIR.split("+"))
    assert widths == alone
    written = {path: path.stat().st_mtime_ns for path in (out / "features").iterdir()}
    lite0 = run_cli("crossval", str(grouped_manifest), "--folds", "3", "--image-size", "48", "--head", "style",
                    "--backbone", "efficientnet_lite0", "--balance", "groups", "--workers", "0", "--no-progress",
                    "--feature-cache", str(out / "features"), "-o", str(tmp_path / "lite0"))
    assert lite0.returncode == 0, lite0.stderr[-2000:]
    assert {path: path.stat().st_mtime_ns for path in (out / "features").iterdir()} == written  # nothing recomputed


@pytest.mark.parametrize("head, extra, fragment", [
    ("pooled", [], "several backbones need --head style"),
    ("style", ["--mode", "finetune", "--freeze-stages", "3"], "not supported with several backbones"),
])
def test_what_the_pair_cannot_do_is_refused_in_one_line(grouped_manifest, tmp_path, capsys, head, extra,  # noqa: F811
                                                        fragment):
    from artstyle.cli import main

    code = main(["crossval", str(grouped_manifest), "--folds", "3", "--image-size", "48", "--head", head,
                 "--backbone", PAIR, *extra, "-o", str(tmp_path / "cv")])
    stderr = capsys.readouterr().err
    assert code == 1 and len(stderr.strip().splitlines()) == 1 and fragment in stderr, stderr


def test_backbones_that_normalise_their_input_differently_are_refused():
    with pytest.raises(ArtstyleError, match="normalise their input differently"):
        create_model("efficientnet_lite0+resnet18", CLASSES, head="style", pretrained=False)


def test_a_probe_of_the_pair_trains_exports_to_int8_and_predicts(grouped_data, tmp_path):  # noqa: F811
    run, onnx = tmp_path / "run", tmp_path / "model" / "model.onnx"
    trained = run_cli("train", str(grouped_data), "--mode", "probe", "--backbone", PAIR, "--head", "style",
                      "--image-size", "48", "--probe-c", "1", "--workers", "0", "-o", str(run))
    assert trained.returncode == 0, trained.stderr[-2000:]
    # 6 held-out images at 48 px say little about int8's accuracy: this checks that a pair quantises.
    exported = run_cli("export", str(run), "-o", str(onnx), "--int8", "--min-agreement", "0.5")
    assert exported.returncode == 0, exported.stderr[-2000:]
    card = json.loads(onnx.with_suffix(".json").read_text())
    assert card["arch"] == "tf_efficientnet_lite0+tf_efficientnet_lite2"
    assert onnx.with_suffix(".int8.onnx").is_file()
    images = [str(p) for p in real_images(per_class=1)]
    for precision in ("fp32", "int8"):
        done = run_cli("predict", *images, "--model", str(onnx), "--precision", precision, "--format", "csv")
        assert done.returncode == 0, done.stderr[-2000:]
        rows = pd.read_csv(io.StringIO(done.stdout))
        assert len(rows) == len(images) and rows["error"].isna().all()
        assert set(rows["label"]) <= set(CLASSES)
