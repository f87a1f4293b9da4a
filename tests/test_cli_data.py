"""`artstyle data ...` through the real command line, in-process and as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from corpus import expected_invalid, make_bad_corpus
from test_data import make_dataset, write_image  # skips this module too without the data extra

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

    assert main(["data", "audit", str(manifest), "-o", str(tmp_path / "audit")]) == 0
    out = capsys.readouterr().out
    assert "majority baseline" in out and (tmp_path / "audit" / "audit.md").is_file()


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
