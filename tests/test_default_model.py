"""The shipped default model: the README's main job, its model card, and its accuracy on the
held-out split of the real data (recomputed: artstyle's split is deterministic for a seed)."""

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


def test_default_model_on_the_held_out_split_of_the_real_data(shared_data):
    from artstyle.data import scan, split

    test = split(scan(shared_data, progress=False), None, seed=42)["test"]
    clf = artstyle.load()
    predictions = clf.predict(test["path"].tolist())
    correct = sum(p.label == label for p, label in zip(predictions, test["label"]))
    assert len(test) > 900
    assert correct / len(test) >= 0.995
