"""Long comparisons: a crossval killed with kill -9 resumes at its first unfinished fold and ends
with what an uninterrupted one writes; a line per fold with an ETA; the MLP probe head in
crossval, train and export. Real images (artstyle-v1 and -v2), real weights, real processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pd = pytest.importorskip("pandas", reason="needs the data extra: pip install 'artstyle[data]'")
pytest.importorskip("torch", reason="needs the train extra: pip install 'artstyle[train]'")

from process_support import kill_when  # noqa: E402
from test_groups import grouped_data, grouped_manifest  # noqa: E402, F401 - fixtures

REPO = Path(__file__).parents[1]
# Same threads in every process: same arithmetic, so a resumed run can equal an uninterrupted one.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
# The MLP head on 3 folds of 12 real sources at 48 px, each image with one augmented view.
RECIPE = ["--folds", "3", "--image-size", "48", "--workers", "0", "--probe-head", "mlp", "--probe-views", "1"]


def artstyle(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "artstyle", *args], capture_output=True, text=True, timeout=600,
                          env=ENV)


def launch(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "artstyle", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=ENV)


def refused(capsys, args: list[str], *fragments: str) -> None:
    """The command line (in this process: a refusal comes before any work) exits 1 with one line."""
    from artstyle.cli import main

    code, stderr = main(args), capsys.readouterr().err
    assert code == 1 and len(stderr.strip().splitlines()) == 1, stderr
    for fragment in fragments:
        assert fragment in stderr, stderr


def results_of(out: Path) -> tuple[dict, pd.DataFrame]:
    metrics = json.loads((out / "metrics.json").read_text())
    del metrics["seconds"]  # wall-clock time, the one figure two runs never share
    return metrics, pd.read_csv(out / "predictions.csv")


@pytest.fixture(scope="module")
def straight(grouped_manifest, tmp_path_factory):  # noqa: F811
    """An uninterrupted crossval with the MLP head."""
    out = tmp_path_factory.mktemp("straight") / "cv"
    done = artstyle("crossval", str(grouped_manifest), *RECIPE, "-o", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    return out, done


def test_mlp_head_crossval_beats_chance_and_reports_each_fold_with_an_eta(straight):
    out, done = straight
    metrics, predictions = results_of(out)
    assert metrics["probe_head"] == "mlp" and metrics["n"] == len(predictions) == 48
    assert metrics["mean_accuracy"] > 0.45  # three classes: chance is 1/3
    lines = [line for line in done.stderr.splitlines() if line.startswith("fold ")]
    assert [line.split(" done")[0] for line in lines] == ["fold 1/3", "fold 2/3", "fold 3/3"]
    assert all("held-out images, accuracy" in line for line in lines)
    assert "ETA" in lines[0] and "ETA" in lines[1] and lines[2].endswith("all folds done")
    for k in range(3):
        record = json.loads((out / "folds" / f"fold_{k}.json").read_text())
        assert record["fold"] == k and record["n"] == metrics["fold_rows"][k]["n"]
        assert record["accuracy"] == pytest.approx(metrics["fold_rows"][k]["accuracy"])


def test_kill_9_then_resume_writes_what_an_uninterrupted_crossval_writes(straight, grouped_manifest, tmp_path,  # noqa: F811
                                                                         capsys):
    reference, _ = straight
    manifest, out = tmp_path / "manifest.csv", tmp_path / "cv"
    shutil.copyfile(grouped_manifest, manifest)  # the same images, in a file this test may change
    folds = out / "folds"
    run = ["crossval", str(manifest), *RECIPE, "-o", str(out)]

    # Killed before any fold finished: nothing to resume, and a new start is allowed.
    kill_when(launch(*run), lambda: (folds / "plan.json").is_file())
    refused(capsys, [*run, "--resume"], "no fold has finished yet")

    # Killed once the first fold is committed.
    kill_when(launch(*run), lambda: (folds / "fold_0.json").is_file())
    assert not (out / "metrics.json").exists()
    committed = sorted(p.name for p in folds.glob("fold_?.json"))
    assert committed and len(committed) < 3, committed
    refused(capsys, run, "already holds a started crossval", "--resume")
    refused(capsys, [*run, "--resume", "--probe-c", "0.5"], "different config", "probe_c")
    original = manifest.read_text()
    manifest.write_text("".join(original.splitlines(keepends=True)[:-1]))  # one image fewer
    refused(capsys, [*run, "--resume"], "different config", "the data")
    manifest.write_text(original)

    # A predictions file without its record, as a kill between the two leaves it, is not trusted.
    (folds / "fold_2_predictions.csv").write_text("path,label\nforged,anime\n")
    resumed = artstyle("crossval", "--resume", "-o", str(out))  # the saved settings
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"{len(committed)} of 3 folds done, continuing at fold {len(committed)}" in resumed.stderr
    assert f"fold {len(committed) + 1}/3 done" in resumed.stderr
    (ours, our_predictions), (theirs, their_predictions) = results_of(out), results_of(reference)
    assert ours.pop("data") == str(manifest) and theirs.pop("data") == str(grouped_manifest)
    assert ours == theirs
    pd.testing.assert_frame_equal(our_predictions, their_predictions)
    assert not list(folds.glob(".*.tmp"))


def test_resume_refuses_a_folder_where_no_crossval_started(tmp_path, capsys):
    refused(capsys, ["crossval", "--resume", "-o", str(tmp_path / "none")], "no crossval was started")


def test_no_progress_silences_the_fold_lines(grouped_manifest, tmp_path, capfd):  # noqa: F811
    from artstyle.engine.crossval import crossval

    cache = tmp_path / "cache"
    crossval(data=str(grouped_manifest), output=str(tmp_path / "a"), folds=2, mode="probe", image_size=48,
             workers=0, feature_cache=str(cache), progress=False)
    assert "fold " not in capfd.readouterr().err
    done = artstyle("crossval", str(grouped_manifest), "--folds", "2", "--image-size", "48", "--workers", "0",
                    "--feature-cache", str(cache), "--no-progress", "-o", str(tmp_path / "b"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "fold " not in done.stderr and "ETA" not in done.stderr
    assert results_of(tmp_path / "a")[0] == results_of(tmp_path / "b")[0]


def test_finetune_with_frozen_stages_computes_each_image_once_across_folds(grouped_manifest, tmp_path):  # noqa: F811
    """crossval --mode finetune --freeze-stages: LP-FT in each fold on the cached activations,
    which the folds share: each image's are computed by the first fold that trains on it."""
    from safetensors import safe_open

    out = tmp_path / "cv"
    done = artstyle("crossval", str(grouped_manifest), "--folds", "2", "--mode", "finetune", "--freeze-stages", "6",
                    "--head-init", "probe", "--lr", "1e-4", "--epochs", "1", "--freeze-epochs", "0",
                    "--head", "style", "--balance", "groups", "--image-size", "48", "--workers", "0", "-o", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    metrics, predictions = results_of(out)
    assert metrics["mode"] == "finetune" and metrics["freeze_stages"] == 6 and metrics["head"] == "style" and metrics["n"] == len(predictions) == 48
    assert metrics["mean_accuracy"] > 0.45  # three classes: chance is 1/3
    assert "stem and stages 0-5 frozen, from the probe head" in (out / "report.md").read_text()
    ids = []
    for shard in out.glob("features/activations-*/shard-*.safetensors"):
        with safe_open(str(shard), framework="pt") as f:
            ids += json.loads(f.metadata()["ids"])
    assert len(ids) == len(set(ids)) == 48
    for k in range(2):  # each fold's run starts from the probe head and reads what it did not compute
        log = (out / f"fold{k}" / "run" / "train.log").read_text()
        assert "LP-FT: starting from the probe head" in log and "frozen stem + stages 0-5" in log


def test_finetune_with_val_0_trains_each_fold_on_all_its_training_sources(grouped_manifest, tmp_path):  # noqa: F811
    """--val 0: no inner split by source, so each fold's run trains on every image of the other
    folds (as a probe fold's head does), for the fixed --epochs."""
    out = tmp_path / "cv"
    done = artstyle("crossval", str(grouped_manifest), "--folds", "2", "--mode", "finetune", "--freeze-stages", "6",
                    "--head-init", "probe", "--probe-c", "0.1", "--val", "0", "--lr", "1e-4", "--epochs", "1",
                    "--freeze-epochs", "0", "--head", "style", "--image-size", "48", "--workers", "0", "-o", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    folds = pd.read_csv(out / "folds.csv")
    for k in range(2):
        data = {name: pd.read_csv(out / f"fold{k}" / "run" / "data" / f"{name}.csv") for name in ("train", "val", "test")}
        assert data["val"].empty
        assert sorted(data["train"]["path"]) == sorted(folds.loc[folds["fold"] != k, "path"])
        assert sorted(data["test"]["path"]) == sorted(folds.loc[folds["fold"] == k, "path"])
        log = (out / f"fold{k}" / "run" / "train.log").read_text()
        assert f"no val split: --epochs 1 on all {len(data['train'])} training images" in log
    assert results_of(out)[0]["n"] == len(folds)
