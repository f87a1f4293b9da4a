"""``--freeze-stages K``: the frozen stem and first K stages run once per image and view, their
output cached on disk, and only the rest trained. Real Lite0 ImageNet weights, real artstyle-v1
images (a 60-image subset), 48 px, real processes for the kill-and-resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pd = pytest.importorskip("pandas", reason="needs the data extra: pip install 'artstyle[data]'")
torch = pytest.importorskip("torch", reason="needs the train extra: pip install 'artstyle[train]'")
for _extra in ("timm", "safetensors"):
    pytest.importorskip(_extra, reason="needs the train extra: pip install 'artstyle[train]'")

from safetensors.torch import load_file  # noqa: E402

from artstyle.cli import main  # noqa: E402
from artstyle.models import create_model  # noqa: E402
from process_support import kill_when  # noqa: E402

REPO = Path(__file__).parents[1]
# Same threads in every process: same arithmetic, so a resumed run can equal an uninterrupted one.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
CLASSES = ["anime", "cartoon", "human"]
K = 5  # Lite0: stem and blocks[:5] frozen, blocks[5:] + conv_head + head trained
# LP-FT on the cached activations: the probe head first, then 2 epochs at a low LR, sources balanced.
RECIPE = ["--freeze-stages", str(K), "--epochs", "2", "--freeze-epochs", "0", "--head-init", "probe", "--lr", "1e-4",
          "--probe-views", "1", "--balance", "groups", "--image-size", "48", "--workers", "0", "--batch-size", "16"]


def artstyle(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "artstyle", *args], capture_output=True, text=True, timeout=600,
                          env=ENV)


def shard_state(cache: Path) -> dict[str, int]:
    """Every cache shard with its modification time."""
    return {str(p.relative_to(cache)): p.stat().st_mtime_ns for p in cache.glob("activations-*/shard-*.safetensors")}


@pytest.fixture(scope="module")
def frozen_run(shared_subset, tmp_path_factory):
    """One uninterrupted LP-FT run with stages 0-4 frozen; its cache outside the run directory."""
    root = tmp_path_factory.mktemp("frozen")
    done = artstyle("train", str(shared_subset), *RECIPE, "--feature-cache", str(root / "cache"), "-o",
                    str(root / "run"))
    assert done.returncode == 0, done.stderr[-2000:]
    return root / "run", root / "cache"


def test_the_frozen_part_is_bit_identical_and_the_rest_trained(frozen_run):
    run, _ = frozen_run
    start, _ = create_model("efficientnet_lite0", CLASSES, image_size=48)
    before = start.state_dict()
    after = load_file(run / "weights" / "last.safetensors")
    assert after.keys() == before.keys()  # a whole model, as any run writes
    frozen_prefixes = ("conv_stem.", "bn1.", *(f"blocks.{i}." for i in range(K)))
    frozen = [k for k in before if k.startswith(frozen_prefixes)]
    assert len(frozen) > 100 and all(torch.equal(after[k], before[k]) for k in frozen)
    norms = {f"{name}." for name, m in start.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    convs = [f"{name}.weight" for name, m in start.named_modules()
             if isinstance(m, torch.nn.Conv2d) and not f"{name}.".startswith(frozen_prefixes)]
    assert len(convs) == 16  # 4 blocks of stage 5 and 1 of stage 6 (3 convolutions each), conv_head
    assert all(not torch.equal(after[k], before[k]) for k in convs)
    # The trained stages' batch norms keep their ImageNet statistics and scales.
    tail_norms = [k for k in before if any(k.startswith(n) for n in norms) and not k.startswith(frozen_prefixes)]
    assert tail_norms and all(torch.equal(after[k], before[k]) for k in tail_norms)
    assert not torch.equal(after["classifier.weight"], before["classifier.weight"])
    history = pd.read_csv(run / "history.csv")
    assert list(history["epoch"]) == [0, 1] and not history["frozen"].any()
    assert "LP-FT: starting from the probe head" in (run / "train.log").read_text()


def test_a_second_run_reads_the_cache_and_trains_the_same(frozen_run, shared_subset, tmp_path):
    run, cache = frozen_run
    shards = shard_state(cache)
    # 42 train images x 2 views + 9 val images, in one key folder.
    assert len(shards) >= 1 and len({Path(s).parent for s in shards}) == 1
    done = artstyle("train", str(shared_subset), *RECIPE, "--feature-cache", str(cache), "-o", str(tmp_path / "again"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert shard_state(cache) == shards  # nothing written again
    assert "93 views (42 train images x 2, 9 val), 0 computed" in (tmp_path / "again" / "train.log").read_text()
    first, second = (pd.read_csv(r / "history.csv") for r in (run, tmp_path / "again"))
    pd.testing.assert_series_equal(first["val_loss"], second["val_loss"])


def test_backbone_lr_moves_the_trained_stages_a_tenth_as_far_and_the_head_as_far(frozen_run, shared_subset, tmp_path):
    """--backbone-lr 0.1: the same LP-FT from the same cache, the trained stages at a tenth of the
    head's LR. AdamW steps each weight by about its LR whatever the gradient's scale, so the
    stages move about a tenth as far as in the run at one LR, and the head about as far."""
    run, cache = frozen_run
    slow = tmp_path / "slow"
    done = artstyle("train", str(shared_subset), *RECIPE, "--backbone-lr", "0.1", "--feature-cache", str(cache),
                    "-o", str(slow))
    assert done.returncode == 0, done.stderr[-2000:]
    start = create_model("efficientnet_lite0", CLASSES, image_size=48)[0].state_dict()
    same, tenth = (load_file(r / "weights" / "last.safetensors") for r in (run, slow))

    def moved(weights, prefix):
        keys = [k for k in start if k.startswith(prefix) and k.endswith("weight") and start[k].ndim == 4]
        return sum(float((weights[k] - start[k]).abs().sum()) for k in keys) / sum(start[k].numel() for k in keys)

    for stage in ("blocks.5.", "blocks.6.", "conv_head."):
        assert 0.05 < moved(tenth, stage) / moved(same, stage) < 0.2, stage
    head = [float((w["classifier.weight"] - start["classifier.weight"]).abs().mean()) for w in (same, tenth)]
    assert 0.5 < head[1] / head[0] < 2
    history = pd.read_csv(slow / "history.csv")
    assert history["lr"].iloc[0] == 1e-4
    assert list(history["backbone_lr"]) == pytest.approx(list(history["lr"] * 0.1), rel=1e-9)


def test_val_0_trains_a_fixed_schedule_on_every_training_image(frozen_run, shared_subset, tmp_path):
    """--val 0: no inner validation, so every image outside the test split trains (crossval --mode
    finetune --val 0 then trains each fold on all of its training sources, as a probe fold does);
    the LR schedule, early stopping and the best checkpoint follow the training loss."""
    run, cache = frozen_run
    out = tmp_path / "all"
    done = artstyle("train", str(shared_subset), *RECIPE, "--val", "0", "--probe-c", "0.1", "--feature-cache",
                    str(cache), "-o", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    split = {name: pd.read_csv(out / "data" / f"{name}.csv") for name in ("train", "val", "test")}
    assert split["val"].empty and len(split["train"]) + len(split["test"]) == len(list(shared_subset.rglob("*.jpg")))
    assert len(split["train"]) > len(pd.read_csv(run / "data" / "train.csv"))
    history = pd.read_csv(out / "history.csv")
    assert len(history) == 2 and not any(c.startswith("val_") for c in history) and history["train_loss"].notna().all()
    best = json.loads((out / "weights" / "best.json").read_text())
    assert best["epoch"] == int(history["train_loss"].idxmin())
    assert json.loads((out / "test" / "metrics.json").read_text())["n"] == len(split["test"])


def test_the_checkpoint_evaluates_exports_and_predicts(frozen_run, tmp_path, capsys):
    from artstyle.engine import evaluate
    from artstyle.engine.export import export_onnx

    run, _ = frozen_run
    val = pd.read_csv(run / "data" / "val.csv")
    metrics = evaluate(run, run / "data" / "val.csv", tmp_path / "eval", workers=0, quiet=True)
    assert metrics["n"] == len(val) and metrics["accuracy"] >= 0.6  # three classes: chance is 1/3
    card = export_onnx(run, tmp_path / "frozen.onnx")
    assert card["parity"]["passed"]
    capsys.readouterr()
    assert main(["predict", *val["path"][:3], "-m", str(tmp_path / "frozen.onnx"), "-f", "csv", "--no-progress"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines()[1:] if line]
    assert len(rows) == 3 and all(any(c in row for c in CLASSES) for row in rows)


def test_kill_9_after_an_epoch_then_resume_ends_as_the_uninterrupted_run(frozen_run, shared_subset, tmp_path):
    run, cache = frozen_run
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "artstyle", "train", str(shared_subset), *RECIPE,
                             "--feature-cache", str(cache), "-o", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
    kill_when(proc, lambda: (killed / "weights" / "state.pt").is_file())
    resumed = artstyle("train", "--resume", str(killed))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed" in (killed / "train.log").read_text()
    mine, theirs = (pd.read_csv(r / "history.csv") for r in (killed, run))
    pd.testing.assert_series_equal(mine["val_loss"], theirs["val_loss"], rtol=1e-5)
    a, b = (load_file(r / "weights" / "last.safetensors") for r in (killed, run))
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


@pytest.mark.parametrize("argv, message", [
    (["--freeze-stages", "-1"], "--freeze-stages -1: give a number of stages"),
    (["--freeze-stages", "8"], "tf_efficientnet_lite0 has 7 stages; give 1 to 7"),
    (["--freeze-stages", "2", "--mode", "probe"], "--freeze-stages is for --mode finetune"),
    (["--freeze-stages", "2", "--backbone", "vit_tiny_patch16_224"], "not supported for vit_tiny_patch16_224"),
    (["--backbone-lr", "0"], "--backbone-lr 0.0: give a fraction of --lr above 0"),
    (["--backbone-lr", "0.1", "--mode", "probe"], "--backbone-lr is for --mode finetune"),
    (["--val", "0", "--mode", "probe"], "--mode probe fits its temperature (and C) on the val split"),
    (["--val", "0", "--head-init", "probe"], "choosing the probe's C needs a val split: pass --probe-c"),
])
def test_a_bad_freeze_stages_or_backbone_lr_is_one_line_before_any_work(shared_subset, tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    assert main(["train", str(shared_subset), "-o", str(out), *argv]) == 1
    stderr = capsys.readouterr().err
    assert message in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert not out.exists()


def test_the_cache_is_keyed_by_what_changes_the_activations_and_survives_a_killed_writer(shared_subset, tmp_path):
    """Cached views equal the frozen stages' output on the images (float16); a second call reads
    them all; a damaged shard and a writer's leftover temporary file are never trusted; another
    K, image size or frozen weight makes another key, a change in the trained stages does not."""
    from artstyle.config import TrainConfig
    from artstyle.data import scan
    from artstyle.engine.activations import activation_key, cached_activations
    from artstyle.engine.data import image_dataset
    from artstyle.engine.probe import with_views
    from artstyle.engine.transforms import create_eval_transform, create_view_augmentation
    from artstyle.models.stages import frozen_forward

    frame = with_views(scan(shared_subset, progress=False).iloc[::10].reset_index(drop=True), 1)  # 6 images x 2
    model, spec = create_model("efficientnet_lite0", CLASSES, image_size=48)
    model.eval()
    augment, device = create_view_augmentation(TrainConfig()), torch.device("cpu")

    def cached():
        return cached_activations(tmp_path, model, spec, K, frame, device, workers=0, augment=augment)

    acts, stats, counts = cached()
    assert acts.dtype == torch.float16 and counts["computed"] == len(frame) == 12
    plain = frame[frame["view"] == 0]
    dataset = image_dataset(plain, spec, create_eval_transform(spec))  # decoded as training decodes them
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    with torch.inference_mode():
        expected, expected_stats = frozen_forward(model, K, images)
    assert torch.allclose(acts[:len(plain)].float(), expected, atol=1e-2, rtol=1e-2)
    assert torch.allclose(stats[:len(plain)], expected_stats, atol=1e-5)
    assert not torch.allclose(acts[len(plain):].float(), expected, atol=1e-2)  # views 1 are augmented

    again = cached()
    assert again[2]["computed"] == 0 and torch.equal(again[0], acts) and torch.equal(again[1], stats)

    (folder,) = tmp_path.glob("activations-*")
    (shard,) = folder.glob("shard-*.safetensors")
    leftover = folder / f".{shard.name}.x.tmp"  # what a writer killed mid-write leaves
    leftover.write_bytes(b"\0" * 100)
    shard.write_bytes(shard.read_bytes()[:1000])  # a damaged shard
    repaired = cached()
    assert repaired[2]["computed"] == 12 and torch.equal(repaired[0], acts)
    assert not leftover.exists()

    key = activation_key(model, spec, K)
    assert activation_key(model, spec, K - 1) != key
    other_size = create_model("efficientnet_lite0", CLASSES, image_size=64)
    assert activation_key(other_size[0], other_size[1], K) != key
    with torch.no_grad():
        model.blocks[K].parameters().__next__().add_(1.0)  # a trained stage: same activations
        assert activation_key(model, spec, K) == key
        model.blocks[K - 1].parameters().__next__().add_(1e-3)  # a frozen one: not the same
        assert activation_key(model, spec, K) != key
    assert counts["folder"] == str(folder)


@pytest.mark.parametrize("backbone, head", [("efficientnet_lite0", "pooled"), ("efficientnet_lite0", "style"),
                                            ("mobilenetv3_small_100", "pooled"), ("resnet18", "pooled")])
def test_the_tail_on_the_frozen_output_is_the_whole_model(backbone, head):
    """For every supported family and K, the rest of the model run from the frozen part's output
    gives exactly the model's logits (architectures only: random weights, no download)."""
    from artstyle.models.stages import TrainableTail, backbone_stages, frozen_forward

    model, _ = create_model(backbone, CLASSES, pretrained=False, head=head)
    model.eval()
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    stages = len(backbone_stages(model.backbone if head == "style" else model).stages)
    with torch.inference_mode():
        expected = model(images)
        for k in range(1, stages + 1):
            assert torch.allclose(TrainableTail(model, k)(frozen_forward(model, k, images)), expected, atol=1e-5), k


def test_head_init_probe_without_frozen_stages_trains_the_whole_network(shared_subset, tmp_path):
    """LP-FT on images: the probe's feature extraction leaves the weights trainable."""
    from artstyle.engine import train

    result = train(data=str(shared_subset), output=str(tmp_path / "lpft"), head_init="probe", head="style", epochs=1,
                   freeze_epochs=0, lr=1e-4, image_size=48, workers=0, batch_size=16)
    start, _ = create_model("efficientnet_lite0", CLASSES, image_size=48, head="style")
    after = load_file(result.run_dir / "weights" / "last.safetensors")
    assert not torch.equal(after["backbone.conv_stem.weight"], start.state_dict()["backbone.conv_stem.weight"])
    assert "LP-FT: starting from the probe head" in (result.run_dir / "train.log").read_text()
