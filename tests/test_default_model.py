"""The shipped default model: the README's main job, its model card, and its accuracy on the
held-out test split its training run saved (tests/data/default_test_split.csv, written by
scripts/train_default.sh): read, not recomputed, so that a change to the split algorithm cannot
quietly turn training images into test images."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

import artstyle
from artstyle.infer.predictor import DEFAULT_MODEL

EXAMPLES = Path(__file__).parents[1] / "examples"
EXPECTED = [
    ("human_grace_hopper.jpg", "human"),
    ("human_astronaut.jpg", "human"),
    ("cartoon_kid.png", "cartoon"),
    ("cartoon_cat.png", "cartoon"),
    ("anime_boy.png", "anime"),
    # Known weakness, kept visible: a flat-shaded drawn anime face reads as cartoon.
    pytest.param("anime_girl.png", "anime",
                 marks=pytest.mark.xfail(reason="flat-shaded drawn anime face is predicted cartoon", strict=False)),
]


@pytest.fixture(scope="module")
def examples_csv() -> dict[str, dict]:
    """The README's main command, run for real (offline, default model)."""
    done = subprocess.run([sys.executable, "-m", "artstyle", "predict", str(EXAMPLES), "--format", "csv"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return {Path(row["path"]).name: row for row in csv.DictReader(io.StringIO(done.stdout))}


@pytest.mark.parametrize("name, label", EXPECTED)
def test_main_job_classifies_the_bundled_examples(examples_csv, name, label):
    row = examples_csv[name]
    assert row["error"] == ""
    assert abs(sum(float(row[f"p_{c}"]) for c in ("anime", "cartoon", "human")) - 1) < 1e-4
    assert row["label"] == label


def test_model_card_matches_the_shipped_file():
    card = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    data = DEFAULT_MODEL.read_bytes()
    assert hashlib.sha256(data).hexdigest() == card["onnx_sha256"]
    assert len(data) <= 25 * 1024 * 1024
    assert card["classes"] == ["anime", "cartoon", "human"] and card["init"].startswith("imagenet")
    assert card["test_metrics"]["accuracy"] >= 0.995 and card["parity"]["passed"]
    assert sum(card["training"]["data_summary"]["train"].values()) > 4000


SAVED_TEST_SPLIT = Path(__file__).parent / "data" / "default_test_split.csv"


def test_the_saved_test_split_is_the_one_the_card_describes():
    with open(SAVED_TEST_SPLIT, newline="") as f:
        rows = list(csv.DictReader(f))
    card = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    counts = {c: sum(r["label"] == c for r in rows) for c in card["classes"]}
    assert counts == card["training"]["data_summary"]["test"]
    assert card["test_metrics"]["n"] == len(rows) == len({r["path"] for r in rows})


def test_default_model_on_the_held_out_split_of_the_real_data(shared_data):
    with open(SAVED_TEST_SPLIT, newline="") as f:
        test = [(shared_data / r["path"], r["label"]) for r in csv.DictReader(f)]
    clf = artstyle.load()
    predictions = clf.predict([path for path, _ in test])
    correct = sum(p.label == label for p, (_, label) in zip(predictions, test))
    assert len(test) > 900 and all(p.ok for p in predictions)
    assert correct / len(test) >= 0.995
