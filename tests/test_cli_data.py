"""`artstyle data ...` through the real command line, in-process and as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from corpus import expected_invalid, make_bad_corpus
from PIL import Image
from test_data import make_dataset, pd, write_image  # skips this module too without the data extra

from artstyle.cli import main

REPO = Path(__file__).parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    return subprocess.run(
        [sys.executable, "-m", "artstyle", *args], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.fixture
def corpus_dataset(tmp_path):
    root = make_dataset(tmp_path / "data", {"anime": 3, "cartoon": 3, "human": 3})
    return root, make_bad_corpus(root / "human")


def test_scan_subprocess_lists_each_bad_file_on_one_line_without_traceback(corpus_dataset, tmp_path):
    root, corpus = corpus_dataset
    result = run_cli("data", "scan", str(root), "-o", str(tmp_path / "m.csv"))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for name in expected_invalid(corpus):
        lines = [line for line in result.stdout.splitlines() if line.strip().startswith(str(corpus[name]) + ":")]
        assert len(lines) == 1, name
    assert "Invalid files" in result.stdout and (tmp_path / "classes.json").is_file()
    assert "scan:" not in result.stderr  # no progress bar when stderr is not a terminal


def test_full_pipeline_in_process(shared_subset, tmp_path, capsys):
    manifest = tmp_path / "manifest.csv"
    assert main(["data", "scan", str(shared_subset), "-o", str(manifest), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "Scanned 60 files in 3 classes" in out and "anime" in out

    assert (
        main(
            [
                "data",
                "split",
                str(manifest),
                "-o",
                str(tmp_path / "splits"),
                "--val",
                "0.2",
                "--test",
                "0.2",
                "--seed",
                "3",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "train" in out and all((tmp_path / "splits" / f"{s}.csv").is_file() for s in ("train", "val", "test"))

    assert main(["data", "show", str(manifest), "-o", str(tmp_path / "samples.png"), "-n", "3"]) == 0
    assert "9 images from 3 classes" in capsys.readouterr().out
    assert_sample_grid(tmp_path / "samples.png", per_class=3, classes=3)

    assert main(["data", "audit", str(manifest), "-o", str(tmp_path / "audit")]) == 0
    out = capsys.readouterr().out
    assert "majority baseline" in out
    assert_audit_report(tmp_path / "audit", {"anime": 20, "cartoon": 20, "human": 20})


def assert_sample_grid(path: Path, per_class: int, classes: int) -> None:
    """A PNG of the grid's size (matplotlib's figure inches x 100 dpi) with pictures in it, not blank."""
    with Image.open(path) as grid:
        assert grid.format == "PNG"
        assert grid.size == (round(100 * (1.9 * per_class + 1.2)), round(100 * 2.15 * classes))
        pixels = np.asarray(grid.convert("RGB"), dtype=np.float32)
    assert path.stat().st_size > 50_000  # nine photos and drawings, not a few labels on white
    assert pixels.std() > 30 and len(np.unique(pixels.reshape(-1, 3)[::7], axis=0)) > 5000


def assert_audit_report(folder: Path, classes: dict[str, int]) -> None:
    """Every file the audit promises, each with what it should hold for this dataset."""
    summary = json.loads((folder / "audit.json").read_text())
    total = sum(classes.values())
    assert summary["files"] == summary["valid"] == total and summary["invalid"] == 0
    assert summary["classes"] == classes and summary["invalid_files"] == []
    assert set(summary["duplicate_pairs"]) == {f"{k} {s}" for k in ("exact", "near")
                                               for s in ("within class", "across classes")}
    report = (folder / "audit.md").read_text()
    for chart in ("class_balance.png", "image_sizes.png"):
        assert f"]({chart})" in report
        with Image.open(folder / chart) as image:
            assert image.format == "PNG" and min(image.size) >= 200
    # Enough images for the shortcut check: its chart, and the majority baseline of these classes.
    assert "](shortcut.png)" in report and (folder / "shortcut.png").is_file()
    assert summary["shortcut"]["majority_baseline"] == pytest.approx(max(classes.values()) / total, abs=0.01)
    duplicates = pd.read_csv(folder / "duplicates.csv")
    assert len(duplicates) == sum(summary["duplicate_pairs"].values())
    assert {"kind", "scope"} <= set(duplicates.columns)
    tiny = pd.read_csv(folder / "tiny.csv")
    assert list(tiny.columns) == ["path", "label", "width", "height"] and len(tiny) == summary["tiny_images"]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_class_too_small_to_split_is_one_line_naming_the_class(tmp_path, capsys):
    root = make_dataset(tmp_path / "data", {"anime": 10, "cartoon": 10, "human": 2})
    assert main(["data", "scan", str(root), "-o", str(tmp_path / "m.csv")]) == 0
    capsys.readouterr()
    assert (
        main(["data", "split", str(tmp_path / "m.csv"), "-o", str(tmp_path / "s"), "--val", "0.15", "--test", "0.15"])
        == 1
    )
    assert "class 'human' is too small" in _one_line_error(capsys)


@pytest.mark.parametrize(
    "setup,expected",
    [
        ("no_class_folders", "no class folders"),
        ("missing", "no such folder"),
        ("mixed", "mixes split folders"),
    ],
)
def test_bad_data_dirs_give_one_line_errors(tmp_path, capsys, setup, expected):
    root = tmp_path / "data"
    if setup == "no_class_folders":
        root.mkdir()
        write_image(root / "lonely.png", 1)
    elif setup == "mixed":
        make_dataset(root, {"train": 1, "cat": 1})
    assert main(["data", "scan", str(root), "-o", str(tmp_path / "m.csv")]) == 1
    assert expected in _one_line_error(capsys)


def test_empty_class_folder_is_reported_not_fatal(tmp_path, capsys):
    root = make_dataset(tmp_path / "data", {"anime": 2, "human": 2})
    (root / "cartoon").mkdir()
    assert main(["data", "scan", str(root), "-o", str(tmp_path / "m.csv")]) == 0
    assert "class folder 'cartoon' has no images; ignored" in capsys.readouterr().out


def test_show_and_audit_need_something_to_read(tmp_path, capsys):
    assert main(["data", "show", str(tmp_path / "nope.csv"), "-o", str(tmp_path / "s.png")]) == 1
    assert "no such data folder or manifest" in _one_line_error(capsys)
    (tmp_path / "not_manifest.csv").write_text("a,b\n1,2\n")
    assert main(["data", "audit", str(tmp_path / "not_manifest.csv"), "-o", str(tmp_path / "a")]) == 1
    assert "not an artstyle manifest" in _one_line_error(capsys)


def test_bad_flag_values_are_usage_errors(tmp_path, capsys):
    # argparse's usage error: exit 2, as `predict --help` and every Unix tool say.
    assert main(["data", "split", str(tmp_path / "m.csv"), "--val", "1.5"]) == 2
    assert "fraction" in capsys.readouterr().err
