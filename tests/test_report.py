"""The docs' figure tables are what bench/report.py writes from bench/results and the model cards.

Runs the real script on the real files (standard library only, so on the core install)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REPORT = REPO / "bench" / "report.py"


def run_report(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPORT), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60)


def test_the_docs_match_the_results_and_the_model_cards():
    done = run_report("--check")
    assert done.returncode == 0, f"stale docs: run `python bench/report.py`\n{done.stderr}"


def test_a_result_is_quoted_only_with_its_provenance(tmp_path):
    # A result file as a bench writes it (bench/_provenance.py), with a figure no doc holds: the
    # blocks that quote it are then stale. The same file without provenance is only listed.
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from _provenance import provenance
    finally:
        sys.path.remove(str(REPO / "bench"))
    predict = json.loads((REPO / "bench" / "results" / "predict.json").read_text())
    predict.setdefault("results", {}).setdefault("artstyle_predict_cli_int8", {})["images_per_s"] = 12345.6
    (tmp_path / "ray.json").write_text(json.dumps({"results": {}}))
    (tmp_path / "predict.json").write_text(json.dumps({**predict, "provenance": provenance(["bench/bench_predict.py"])}))

    done = run_report("--check", "--results", str(tmp_path))

    assert done.returncode == 1
    assert "docs/benchmarks.md: predict" in done.stderr and "README.md: default-model" in done.stderr
    assert "ray.json: no provenance: re-run or delete" in done.stderr
    assert "predict.json: no provenance" not in done.stderr


def test_a_table_names_its_file_machine_and_commit(tmp_path):
    spec = importlib.util.spec_from_file_location("report", REPORT)
    report = importlib.util.module_from_spec(spec)
    sys.modules["report"] = report  # dataclasses look their module up there
    try:
        spec.loader.exec_module(report)
    finally:
        del sys.modules["report"]
    data = json.loads((REPO / "bench" / "results" / "sort.json").read_text())
    data["provenance"] = {"git": {"commit": "0123456789abcdef", "dirty": False}, "command": "python bench/x.py",
                          "cpu": {"model": "Test CPU 9000", "usable_cores": 16, "vnni": True},
                          "written_utc": "2031-01-02T03:04:05+00:00"}
    ctx = report.Context(tmp_path, REPO / "docs" / "benchmarks.md", {"sort.json": data}, {})

    text = report.RENDERERS["sort"](ctx)

    assert "sort.json](" in text and "Test CPU 9000, 16 cores, VNNI yes" in text and "`0123456`" in text
    assert str(data["results"]["predict"]["images_per_s"]) in text
