"""`artstyle predict` end to end: real model, real files, bad inputs, URLs, formats, exit codes."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import pytest

from artstyle.cli import main
from artstyle.infer import predictor
from corpus import expected_invalid
from predict_support import CLASSES, LocalServer, closed_port_url, make_images

COLUMNS = ["path", "label", "confidence", "p_anime", "p_cartoon", "p_human", "error"]


@pytest.fixture
def predict(shipped, capsys):
    """Run `artstyle predict ... --model M` in-process; returns (exit code, stdout, stderr)."""

    def run(*args):
        code = main(["predict", *map(str, args), "--model", str(shipped.onnx)])
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err
        return code, out, err

    return run


def read_csv(text: str) -> list[dict]:
    rows = list(csv.DictReader(io.StringIO(text)))
    assert not rows or list(rows[0]) == COLUMNS
    return rows


def test_folder_of_good_images_exits_0(predict, shipped):
    code, out, err = predict(shipped.images[0].parent, "--format", "csv")
    rows = read_csv(out)
    assert code == 0 and err == ""
    assert [r["path"] for r in rows] == sorted(str(p) for p in shipped.images[0].parent.iterdir())
    for row in rows:
        probs = [float(row[f"p_{c}"]) for c in CLASSES]
        assert row["label"] == CLASSES[probs.index(max(probs))] and float(row["confidence"]) == max(probs)
        assert sum(probs) == pytest.approx(1, abs=1e-4) and row["error"] == ""


def test_bad_files_one_at_a_time(predict, bad_corpus):
    for name in sorted(expected_invalid(bad_corpus)):
        code, out, err = predict(bad_corpus[name], "--format", "csv")
        (row,) = read_csv(out)
        assert code == 2, name
        assert row["label"] == "" and row["error"], name
        failure_lines = [line for line in err.splitlines() if line.startswith("artstyle: error:")]
        assert failure_lines == [f"artstyle: error: {bad_corpus[name]}: {row['error']}"], name


def test_bad_files_mixed_into_a_folder(predict, bad_corpus, shipped, tmp_path):
    folder = bad_corpus["zero_byte"].parent
    good = make_images(folder / "good", 3)
    code, out, err = predict(folder, "--format", "jsonl")
    rows = {r["path"]: r for r in map(json.loads, out.splitlines())}
    failed = {str(bad_corpus[n]) for n in expected_invalid(bad_corpus)}
    assert code == 2
    assert {p for p, r in rows.items() if r["error"]} == failed
    assert all(rows[str(p)]["label"] in CLASSES for p in good)
    assert len(rows) == len(bad_corpus) + len(good)
    assert len([line for line in err.splitlines() if line.startswith("artstyle: error:")]) == len(failed)
    assert err.splitlines()[-1] == f"artstyle: {len(failed)} of {len(rows)} inputs could not be classified"


def test_urls_good_html_too_large_and_unreachable(predict, shipped):
    jpeg = shipped.images[0].read_bytes()
    routes = {"/cat.jpg": ("image/jpeg", jpeg), "/index.html": ("text/html", b"<html>hello</html>"),
              "/huge.jpg": ("image/jpeg", jpeg + b"\0" * (2 * 1024 * 1024))}
    with LocalServer(routes) as server:
        urls = [server.url("/cat.jpg"), server.url("/index.html"), server.url("/huge.jpg"), closed_port_url()]
        code, out, err = predict(*urls, "--format", "csv", "--max-download-mb", "1", "--timeout", "3",
                                 "--allow-private-urls")
        refused_code, refused_out, refused_err = predict(urls[0], "--format", "csv")
    rows = read_csv(out)
    assert code == 2 and [r["path"] for r in rows] == urls
    assert rows[0]["label"] in CLASSES and rows[0]["error"] == ""
    assert "not an image (server sent text/html)" in rows[1]["error"]
    assert "too large" in rows[2]["error"] and "cannot reach" in rows[3]["error"]
    assert len([line for line in err.splitlines() if line.startswith("artstyle: error: http")]) == 3
    # Without the option, this machine's own address is refused (a row with the reason, exit 2).
    assert refused_code == 2 and "refused: 127.0.0.1 is a loopback address" in read_csv(refused_out)[0]["error"]
    assert "Traceback" not in refused_err


def test_formats_output_file_and_top_k(predict, shipped, tmp_path):
    images = [str(p) for p in shipped.images[:3]]
    code, out, _ = predict(*images, "--format", "table", "--top-k", "2")
    header, *rows = out.splitlines()
    assert code == 0 and header.split()[:5] == ["label", "conf", "p_anime", "p_cartoon", "p_human"]
    assert len(rows) == 3 and rows[0].endswith(images[0]) and rows[0].split()[0] in CLASSES

    target = tmp_path / "out.json"
    assert predict(*images, "-o", target, "--top-k", "2")[0] == 0  # format from the suffix
    rows = json.loads(target.read_text())
    assert [r["path"] for r in rows] == images and len(rows[0]["top_k"]) == 2
    assert rows[0]["top_k"][0] == {"label": rows[0]["label"], "probability": rows[0]["confidence"]}


def test_stdin_list_and_globs(predict, shipped, monkeypatch):
    listing = "\n".join(str(p) for p in shipped.images[:2]) + "\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(listing))
    code, out, _ = predict("-", str(shipped.images[0].parent / "*.png"), "--format", "csv")
    paths = [r["path"] for r in read_csv(out)]
    pngs = sorted(str(p) for p in shipped.images[0].parent.glob("*.png"))
    assert code == 0 and paths == [str(p) for p in shipped.images[:2]] + pngs


def test_interrupted_run_keeps_valid_output(predict, shipped, tmp_path, monkeypatch):
    real_iter = predictor.Classifier.predict_iter

    def interrupted(self, inputs, **kw):
        for i, pred in enumerate(real_iter(self, inputs, **kw)):
            if i == 2:
                raise KeyboardInterrupt
            yield pred

    monkeypatch.setattr(predictor.Classifier, "predict_iter", interrupted)
    target = tmp_path / "partial.json"
    code, _, err = predict(shipped.images[0].parent, "-o", target)
    assert code == 130 and "interrupted" in err
    assert len(json.loads(target.read_text())) == 2


def test_user_errors_exit_1_with_one_line(predict, shipped, tmp_path, capsys, monkeypatch):
    code, _, err = predict(tmp_path)  # an empty folder
    assert code == 1 and err.count("\n") == 1 and "no images or videos found" in err
    monkeypatch.setattr(predictor, "DEFAULT_MODEL", tmp_path / "default.onnx")
    assert main(["predict", str(shipped.images[0])]) == 1
    assert capsys.readouterr().err == "artstyle: error: no default model is installed; pass --model (an exported .onnx)\n"


def test_subprocess_exit_codes_and_stdout(shipped, bad_corpus):
    base = [sys.executable, "-m", "artstyle", "predict", "--model", str(shipped.onnx)]
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    good = subprocess.run(base + [str(p) for p in shipped.images[:2]], capture_output=True, text=True, env=env, timeout=60)
    assert good.returncode == 0, good.stderr
    rows = read_csv(good.stdout)  # piped stdout: CSV
    assert len(rows) == 2 and all(r["label"] in CLASSES for r in rows)

    mixed = subprocess.run(base + [str(shipped.images[0]), str(bad_corpus["text_as_jpg"]), "--format", "jsonl"],
                           capture_output=True, text=True, env=env, timeout=60)
    assert mixed.returncode == 2 and "Traceback" not in mixed.stderr
    lines = [json.loads(line) for line in mixed.stdout.splitlines()]
    assert [bool(r["error"]) for r in lines] == [False, True]
    assert f"artstyle: error: {bad_corpus['text_as_jpg']}: not an image" in mixed.stderr


def test_explain_writes_heatmaps_grid_and_csv(exported, tmp_path, capsys, bad_corpus):
    from PIL import Image

    out = tmp_path / "explain"
    inputs = [str(p) for p in exported.images[:3]] + [str(bad_corpus["truncated_jpeg"])]
    code = main(["predict", *inputs, "--explain", "-o", str(out), "--model", str(exported.onnx), "--format", "jsonl"])
    stdout, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in err
    assert [bool(json.loads(line)["error"]) for line in stdout.splitlines()] == [False, False, False, True]
    heatmaps = sorted(out.glob("0000*.png"))
    assert [p.name.split("_", 1)[0] for p in heatmaps] == ["00000", "00001", "00002"]
    assert Image.open(heatmaps[0]).size == (256, 256) and (out / "grid_000.png").is_file()
    rows = read_csv((out / "predictions.csv").read_text())
    assert len(rows) == 4 and "truncated" in rows[3]["error"]


def test_explain_without_weights_is_a_clear_error(exported, tmp_path, capsys):
    from artstyle.engine.gradcam import resolve_explain_weights

    assert resolve_explain_weights(exported.run) == exported.run / "weights" / "best.safetensors"
    onnx_only = tmp_path / "m" / "model.onnx"
    onnx_only.parent.mkdir()
    for suffix in (".onnx", ".json"):
        onnx_only.with_suffix(suffix).write_bytes(exported.onnx.with_suffix(suffix).read_bytes())
    code = main(["predict", str(exported.images[0]), "--explain", "-o", str(tmp_path / "x"), "--model", str(onnx_only)])
    assert code == 1
    assert "export with --with-weights" in capsys.readouterr().err
    assert main(["predict", str(exported.images[0]), "--explain"]) == 1
    assert "--explain needs -o DIR" in capsys.readouterr().err


def test_usage_errors_exit_2_as_the_help_says(shipped, capsys):
    assert main(["predict", "--help"]) == 0
    assert "is rejected by the argument parser with its usage message (exit 2)" in capsys.readouterr().out
    assert main(["predict", str(shipped.images[0]), "--top-k", "two"]) == 2
    assert "usage:" in capsys.readouterr().err
    assert main(["predict"]) == 2  # no input at all
    assert main(["predict", str(shipped.images[0]), "--top-k", "0", "--model", str(shipped.onnx)]) == 1  # a bad value
    assert "--top-k must be at least 1" in capsys.readouterr().err
    assert main(["predict", str(shipped.images[0]), "--streams", "0", "--model", str(shipped.onnx)]) == 1
    assert "--streams must be at least 1" in capsys.readouterr().err


def test_streams_option_gives_the_same_rows(shipped, tmp_path):
    """`--streams 1` (one batch at a time over both threads) and `--streams 2` write the same CSV."""
    rows = {}
    for streams in ("1", "2"):
        out = tmp_path / f"streams-{streams}.csv"
        assert main(["predict", *map(str, shipped.images), "--model", str(shipped.onnx), "-o", str(out),
                     "--batch-size", "2", "--threads", "2", "--streams", streams]) == 0
        rows[streams] = out.read_text().splitlines()
    assert rows["1"] == rows["2"] and len(rows["1"]) == len(shipped.images) + 1
