"""Source-aware validation on real images: groups in the scan, splits by group, grouped
cross-validation, per-group evaluation of exported models, temperature scaling and the
``uncertain`` label."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pd = pytest.importorskip("pandas", reason="needs the data extra: pip install 'artstyle[data]'")

from test_cli_data import run_cli  # noqa: E402

from artstyle.errors import ArtstyleError  # noqa: E402

V2 = Path(__file__).parents[1].parent / "shared" / "data" / "artstyle-v2"
CLASSES = ("anime", "cartoon", "human")


@pytest.fixture(scope="module")
def grouped_data(tmp_path_factory) -> Path:
    """CLASS/SOURCE/file.jpg: 4 real sources per class from artstyle-v2, 4 images each, linked."""
    if not (V2 / "anime").is_dir():
        pytest.skip(f"real data not present at {V2}")
    from artstyle.images import resolve_link_stub

    root = tmp_path_factory.mktemp("grouped")
    for label in CLASSES:
        for source in sorted((V2 / label).iterdir())[:4]:
            (root / label / source.name).mkdir(parents=True)
            for image in sorted(source.glob("*.jpg"))[:4]:
                os.symlink(resolve_link_stub(image), root / label / source.name / image.name)
    return root


@pytest.fixture(scope="module")
def grouped_manifest(grouped_data, tmp_path_factory) -> Path:
    from artstyle.data import scan

    path = tmp_path_factory.mktemp("manifest") / "manifest.csv"
    scan(grouped_data, path, progress=False)
    return path


# ------------------------------------------------------------------------------ scan and split

def test_scan_names_each_image_by_its_source_folder(grouped_data, grouped_manifest):
    from artstyle.data import read_manifest

    df = read_manifest(grouped_manifest)
    expected = {Path(p).parent.name for p in grouped_data.glob("*/*/*.jpg")}
    assert set(df["group"]) == expected and len(expected) == 12
    assert df["valid"].all()


def test_group_by_regex_takes_the_first_capture_group(grouped_data, tmp_path):
    from artstyle.data import scan

    df = scan(grouped_data, progress=False, group_by=r"^[a-z]+/([a-z]+)")
    # Only the leading letters of each source name: "anton-animefaces" -> "anton".
    assert {"anton", "animax"} <= set(df["group"])
    with pytest.raises(ArtstyleError, match="not a valid regular expression"):
        scan(grouped_data, progress=False, group_by="([")


def test_link_stubs_are_followed_to_the_image(tmp_path):
    """A symlink stored as a text file (git core.symlinks=false) is read as its target."""
    from artstyle.data import scan
    from test_data import write_image

    for folder in ("store", "data/cat/src", "data/dog/src2"):
        (tmp_path / folder).mkdir(parents=True)
    target = write_image(tmp_path / "store" / "a.jpg", 1, (64, 48))
    (tmp_path / "data" / "cat" / "src" / "a.jpg").write_text("../../../store/a.jpg")
    write_image(tmp_path / "data" / "dog" / "src2" / "b.jpg", 2, (64, 48))
    df = scan(tmp_path / "data", progress=False)
    row = df[df["label"] == "cat"].iloc[0]
    assert row["valid"] and row["width"] == 64 and row["path"] == str(target) and row["group"] == "src"


def test_split_by_group_keeps_every_source_in_one_split(grouped_manifest, tmp_path):
    result = run_cli("data", "split", str(grouped_manifest), "--by-group", "--val", "0.25", "--test", "0.25",
                     "-o", str(tmp_path / "split"))
    assert result.returncode == 0, result.stderr
    parts = {s: pd.read_csv(tmp_path / "split" / f"{s}.csv") for s in ("train", "val", "test")}
    seen = {}
    for name, part in parts.items():
        assert set(part["label"]) == set(CLASSES), name
        for group in set(part["group"]):
            assert seen.setdefault(group, name) == name, f"{group} in {seen[group]} and {name}"
    assert json.loads((tmp_path / "split" / "split.json").read_text())["by_group"] is True


def test_split_by_group_without_groups_says_how_to_get_them(tmp_path):
    from artstyle.data import scan, split
    from test_data import make_dataset

    flat = scan(make_dataset(tmp_path / "flat", {"a": 4, "b": 4}), progress=False)
    with pytest.raises(ArtstyleError, match="no groups.*--group-by"):
        split(flat, by_group=True)


def test_audit_warns_when_every_group_holds_one_class(grouped_manifest, tmp_path):
    result = run_cli("data", "audit", str(grouped_manifest), "-o", str(tmp_path / "audit"))
    assert result.returncode == 0, result.stderr
    assert "every one of the 12 groups holds a single class" in result.stdout
    assert "validate by group" in (tmp_path / "audit" / "audit.md").read_text()


# ------------------------------------------------------------------------------ cross-validation

@pytest.fixture(scope="module")
def crossval_run(grouped_manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("cv") / "cv"
    result = run_cli("crossval", str(grouped_manifest), "--folds", "3", "--image-size", "64", "--head", "style",
                     "--balance", "groups", "--probe-views", "1", "--workers", "0", "-o", str(out))
    assert result.returncode == 0, result.stderr
    return out, result


def test_crossval_predicts_every_image_once_by_a_model_that_never_saw_its_source(crossval_run, grouped_manifest):
    out, _ = crossval_run
    folds = pd.read_csv(out / "folds.csv")
    preds = pd.read_csv(out / "predictions.csv")
    assert len(preds) == len(folds) == 48 and preds["path"].is_unique
    assert (folds.groupby("group")["fold"].nunique() == 1).all()  # whole groups held out
    assert sorted(folds["fold"].unique()) == [0, 1, 2]
    probs = preds[[f"p_{c}" for c in CLASSES]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)


def test_crossval_metrics_are_consistent_with_its_predictions(crossval_run):
    out, result = crossval_run
    metrics = json.loads((out / "metrics.json").read_text())
    preds = pd.read_csv(out / "predictions.csv")
    correct = preds["label"] == preds["predicted"]
    assert metrics["mean_accuracy"] == pytest.approx(correct.mean())
    per_group = correct.groupby(preds["group"]).mean()
    assert metrics["group_mean_accuracy"] == pytest.approx(per_group.mean())
    assert metrics["worst_group_accuracy"] == pytest.approx(per_group.min())
    assert {g: r["n"] for g, r in metrics["groups"].items()} == preds["group"].value_counts().to_dict()
    assert metrics["temperature"] > 0 and 0 <= metrics["ece"] <= 1
    assert len(metrics["fold_rows"]) == 3
    for name in ("groups.png", "reliability.png", "report.md"):
        assert (out / name).stat().st_size > 0
    assert f"{metrics['mean_accuracy']:.4f}" in result.stdout


def test_crossval_caches_each_image_and_its_augmented_view_once(crossval_run):
    out, _ = crossval_run
    (paths_file,) = (out / "features").glob("*.paths.json")
    ids = json.loads(paths_file.read_text())
    assert len(ids) == len(set(ids)) == 2 * 48
    assert sum(i.endswith("|view1") for i in ids) == 48


def test_augmented_views_are_reproducible_and_differ_from_the_image(grouped_manifest):
    from artstyle.config import TrainConfig
    from artstyle.engine.probe import ViewDataset
    from artstyle.engine.transforms import create_view_augmentation
    from artstyle.models import ModelSpec

    frame = pd.read_csv(grouped_manifest).head(8)
    spec = ModelSpec(backbone="x", arch="x", classes=sorted(frame["label"].unique()), image_size=64)
    # Every view re-compressed and rescaled, so that each one differs: with the default
    # probabilities a view can come out as the image itself (no step fired), by its seed.
    augment = create_view_augmentation(TrainConfig(jpeg_p=1.0, rescale_p=1.0))
    clean = ViewDataset(frame.assign(view=0), spec, augment)
    first, again = ViewDataset(frame.assign(view=1), spec, augment), ViewDataset(frame.assign(view=1), spec, augment)
    changed = 0
    for i in range(len(frame)):
        assert np.array_equal(first[i][0].numpy(), again[i][0].numpy())  # same path and view: same pixels
        changed += not np.array_equal(first[i][0].numpy(), clean[i][0].numpy())
    assert changed == len(frame)


def test_crossval_refuses_more_folds_than_a_class_has_groups(grouped_manifest, tmp_path):
    result = run_cli("crossval", str(grouped_manifest), "--folds", "5", "-o", str(tmp_path / "cv"))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "'anime' has 4" in result.stderr and "--folds 4" in result.stderr


# ------------------------------------------------------------------------------ calibration

def test_fit_temperature_recovers_the_temperature_that_generated_the_labels():
    from artstyle.engine.calibration import calibrated_probs, fit_temperature

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, size=(20000, 3))
    probs = calibrated_probs(logits, 2.5)
    targets = np.array([rng.choice(3, p=p) for p in probs])
    assert fit_temperature(logits, targets) == pytest.approx(2.5, rel=0.05)


def test_export_bakes_the_temperature_into_the_onnx_probabilities(exported, tmp_path):
    import artstyle
    from artstyle.engine.export import export_onnx

    hot = tmp_path / "hot.onnx"
    card = export_onnx(exported.run, hot, temperature=3.0, parity_images=exported.images)
    assert card["temperature"] == 3.0
    cold = artstyle.load(exported.onnx).predict(exported.images)
    warm = artstyle.load(hot).predict(exported.images)
    for a, b in zip(cold, warm):
        logits = np.log([a.probs[c] for c in card["classes"]])
        expected = np.exp(logits / 3.0) / np.exp(logits / 3.0).sum()
        np.testing.assert_allclose([b.probs[c] for c in card["classes"]], expected, atol=1e-5)
        assert a.label == b.label and b.confidence < a.confidence


def test_min_confidence_labels_low_confidence_predictions_uncertain(exported):
    result = run_cli("predict", *map(str, exported.images), "-m", str(exported.onnx), "--min-confidence", "0.999",
                     "--format", "csv")
    assert result.returncode == 0, result.stderr
    rows = pd.read_csv(pd.io.common.StringIO(result.stdout))
    assert (rows["label"] == "uncertain").all()  # an untrained head is never that sure
    assert rows[[c for c in rows.columns if c.startswith("p_")]].notna().all().all()


# ------------------------------------------------------------------------------ evaluate .onnx

def test_evaluate_an_exported_model_reports_accuracy_per_group(exported, grouped_manifest, tmp_path):
    from artstyle.engine import evaluate

    metrics = evaluate(exported.onnx, grouped_manifest, tmp_path / "eval", quiet=True)
    preds = pd.read_csv(tmp_path / "eval" / "predictions.csv")
    assert metrics["n"] == len(preds) == 48
    assert len(metrics["groups"]) == 12
    groups = pd.read_csv(grouped_manifest).set_index("path")["group"]
    per_group = (preds["true"] == preds["predicted"]).groupby(preds["path"].map(groups)).mean()
    assert metrics["worst_group_accuracy"] == pytest.approx(per_group.min())
    assert "Accuracy per group" in (tmp_path / "eval" / "report.md").read_text()


def test_evaluate_refuses_an_onnx_file_without_a_card(exported, grouped_manifest, tmp_path):
    import shutil

    bare = tmp_path / "bare.onnx"
    shutil.copyfile(exported.onnx, bare)
    result = run_cli("evaluate", str(bare), str(grouped_manifest), "-o", str(tmp_path / "e"))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "no model card" in result.stderr and len(result.stderr.strip().splitlines()) == 1

    card = json.loads(exported.onnx.with_suffix(".json").read_text())
    bare.with_suffix(".json").write_text(json.dumps({**card, "format": "something-else"}))
    result = run_cli("evaluate", str(bare), str(grouped_manifest), "-o", str(tmp_path / "e"))
    assert "not an artstyle export" in result.stderr and "Traceback" not in result.stderr


def test_crossval_finetune_trains_one_run_per_fold_and_tests_on_held_out_groups(grouped_manifest, tmp_path):
    from artstyle.engine.crossval import crossval

    out = tmp_path / "cv"
    metrics = crossval(data=str(grouped_manifest), output=str(out), folds=2, mode="finetune", epochs=1,
                       freeze_epochs=0, image_size=32, batch_size=16, workers=0, val=0.3)
    folds = pd.read_csv(out / "folds.csv")
    for k in (0, 1):
        run = out / f"fold{k}"
        test = pd.read_csv(run / "split" / "test.csv")
        trained = pd.concat([pd.read_csv(run / "split" / f"{s}.csv") for s in ("train", "val")])
        assert set(test["path"]) == set(folds.loc[folds["fold"] == k, "path"])
        assert not set(test["group"]) & set(trained["group"])  # the fold model never saw those sources
        assert (run / "run" / "weights" / "best.safetensors").is_file()
    assert metrics["n"] == 48 and len(metrics["fold_rows"]) == 2
