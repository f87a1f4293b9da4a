"""The torch-free predictor API on the shipped model: artstyle.load().predict(...), model
verification, input expansion, URL fetching and the result writers. Only the parity check
against PyTorch needs torch."""

from __future__ import annotations

import io
import itertools
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import artstyle
from artstyle.errors import ArtstyleError, ImageLoadError
from artstyle.infer import Prediction, predictor
from artstyle.infer.sources import expand_inputs, fetch_url
from artstyle.infer.writers import open_writer
from predict_support import CLASSES, LocalServer, closed_port_url, copy_model, make_images


@pytest.fixture(scope="module")
def clf(shipped):
    return artstyle.load(shipped.onnx)


# ----------------------------------------------------------------------------- predictions


def test_predict_one_path(clf, shipped):
    pred = clf.predict(shipped.images[0])
    assert isinstance(pred, Prediction) and pred.ok
    assert pred.source == str(shipped.images[0])
    assert list(pred.probs) == CLASSES and pred.label in CLASSES
    assert pred.confidence == max(pred.probs.values()) == pred.probs[pred.label]
    assert sum(pred.probs.values()) == pytest.approx(1.0, abs=1e-5)
    assert pred.top(2)[0] == (pred.label, pred.confidence)


def test_paths_images_bytes_and_files_agree(clf, shipped):
    path = shipped.images[2]
    by_path = clf.predict(path)
    for other in (str(path), Image.open(path), path.read_bytes(), io.BytesIO(path.read_bytes())):
        assert clf.predict(other).probs == pytest.approx(by_path.probs, abs=1e-6)


def test_bytearray_and_memoryview_inputs_are_bytes_too(clf, shipped):
    data = shipped.images[2].read_bytes()
    expected = clf.predict(data)
    for other in (bytearray(data), memoryview(data)):
        assert clf.predict(other).probs == pytest.approx(expected.probs, abs=1e-6)
    # A bad one is an error record with errors="return", never a crash.
    bad = clf.predict(bytearray(b"junk"), errors="return")
    assert not bad.ok and bad.source == "<bytes 0>" and "not an image" in bad.error
    assert clf.predict([data, bytearray(b"")], errors="return")[1].error == "empty file (0 bytes)"
    with pytest.raises(ImageLoadError, match="not an image"):
        clf.predict(bytearray(b"junk"))


def test_batched_equals_one_by_one_and_keeps_order(clf, shipped):
    many = clf.predict(shipped.images)
    assert [p.source for p in many] == [str(p) for p in shipped.images]
    for path, pred in zip(shipped.images, many):
        assert pred.probs == pytest.approx(clf.predict(path).probs, abs=1e-5)
    small_batches = list(clf.predict_iter(shipped.images, batch_size=2, workers=1))
    assert [p.source for p in small_batches] == [p.source for p in many]
    for a, b in zip(small_batches, many):
        assert a.probs == pytest.approx(b.probs, abs=1e-5)


def test_streams_give_the_same_answers_in_input_order(shipped, bad_corpus):
    """Several batches in the model at once (the default, one per thread) answer exactly as one
    batch at a time over every thread, in input order, with a bad file kept in its place."""
    inputs = [*shipped.images, bad_corpus["truncated_jpeg"], *shipped.images[:3]]
    one_stream = artstyle.load(shipped.onnx, threads=2, streams=1)
    three_streams = artstyle.load(shipped.onnx, threads=3, streams=3)
    assert one_stream.session.get_session_options().intra_op_num_threads == 2
    assert three_streams.session.get_session_options().intra_op_num_threads == 1
    expected = one_stream.predict(inputs, errors="return")
    got = list(three_streams.predict_iter(inputs, batch_size=2))
    assert [p.source for p in got] == [p.source for p in expected] == [str(p) for p in inputs]
    assert [p.ok for p in got] == [p.ok for p in expected] and not got[len(shipped.images)].ok
    for a, b in zip(got, expected):
        assert a.probs == pytest.approx(b.probs, abs=1e-5)


def test_streams_really_run_side_by_side(shipped):
    """Two batches meet inside the model: a barrier that only two concurrent calls can pass
    (one batch at a time would break it after its timeout)."""
    import threading

    clf = artstyle.load(shipped.onnx, threads=2, streams=2)
    barrier, run = threading.Barrier(2, timeout=20), clf.run

    def meet_then_run(batch):
        barrier.wait()
        return run(batch)
    clf.run = meet_then_run
    preds = list(clf.predict_iter(shipped.images[:4], batch_size=1))
    assert [p.source for p in preds] == [str(p) for p in shipped.images[:4]] and all(p.ok for p in preds)


def test_a_slow_first_batch_still_comes_out_first(shipped):
    import time

    clf = artstyle.load(shipped.onnx, threads=3, streams=3)
    expected = [clf.predict(p).probs for p in shipped.images]
    calls, run = [], clf.run

    def first_one_slow(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            time.sleep(0.5)  # the other streams finish their batches meanwhile
        return run(batch)
    clf.run = first_one_slow
    preds = list(clf.predict_iter(shipped.images, batch_size=1))
    assert [p.source for p in preds] == [str(p) for p in shipped.images]
    for pred, probs in zip(preds, expected):
        assert pred.probs == pytest.approx(probs, abs=1e-5)


def live_pipeline_threads() -> list[str]:
    import threading

    return [t.name for t in threading.enumerate() if t.name.startswith(("artstyle-model", "artstyle-decode"))]


def test_stopping_early_or_a_model_failure_leaves_no_threads(shipped):
    clf = artstyle.load(shipped.onnx, threads=2, streams=2)
    answers = clf.predict_iter(shipped.images * 4, batch_size=2)
    assert next(answers).ok
    answers.close()  # a consumer that stops early
    assert live_pipeline_threads() == []

    def broken(batch):
        raise RuntimeError("the model failed")
    clf.run = broken
    with pytest.raises(RuntimeError, match="the model failed"):
        clf.predict(shipped.images)
    assert live_pipeline_threads() == []


def test_raising_on_a_bad_input_first_yields_what_is_computed(shipped, bad_corpus):
    """errors="raise": the batches already in the model are answered before the error."""
    clf = artstyle.load(shipped.onnx, threads=2, streams=2)
    good = shipped.images[:6]
    got = []
    with pytest.raises(ImageLoadError, match="truncated"):
        for pred in clf.predict_iter([*good, bad_corpus["truncated_jpeg"]], batch_size=2, errors="raise"):
            got.append(pred.source)
    assert got == [str(p) for p in good]


def test_streams_cannot_outnumber_threads(shipped):
    with pytest.raises(ArtstyleError, match=r"streams \(3\) cannot exceed threads \(2\)"):
        artstyle.load(shipped.onnx, threads=2, streams=3)
    assert [predictor.default_streams(t) for t in (1, 2, 5, 6, 16, 64)] == [1, 2, 1, 3, 4, 4]


def test_a_short_list_is_shared_between_the_streams(shipped):
    """Ten images on two streams run as two batches of five side by side, not one of ten."""
    clf = artstyle.load(shipped.onnx, threads=2, streams=2)
    sizes, run = [], clf.run
    clf.run = lambda batch: sizes.append(len(batch)) or run(batch)
    inputs = (shipped.images * 4)[:10]
    assert all(p.ok for p in clf.predict(inputs))
    assert sizes == [5, 5]


def test_a_list_starts_and_ends_on_small_batches_shared_by_the_streams(shipped, bad_corpus):
    """The streams start early and finish together: 43 inputs at batch 8 on two streams run as a
    first round of batches of 2, four batches of 7 or 8, then two last rounds of 2, not five of
    8 and a last of 3 that one stream would run while the other sat idle. A generator (length
    unknown) gets full batches."""
    clf = artstyle.load(shipped.onnx, threads=2, streams=2, batch_size=8)
    sizes, run = [], clf.run
    clf.run = lambda batch: sizes.append(len(batch)) or run(batch)
    inputs = (shipped.images * 11)[:42] + [bad_corpus["truncated_jpeg"]]
    predictions = clf.predict(inputs, errors="return")
    assert [p.source for p in predictions] == [str(i) for i in inputs]
    # The last batch of 2 holds the unreadable input: one image of it reaches the model.
    assert sorted(sizes) == [1, 2, 2, 2, 2, 2, 7, 8, 8, 8]
    sizes.clear()
    assert len(list(clf.predict_iter(iter(shipped.images * 5)))) == len(shipped.images) * 5
    assert sizes[:-1] == [8] * (len(sizes) - 1)
    # After the plan, batch_size again: the sizes never run out.
    assert first_sizes(500, 23) == [8, 8] + [29] * 4 + [28] * 12 + [8] * 4 + [32]
    assert first_sizes(10, 3) == [5, 5, 32]
    assert first_sizes(1, 2) == first_sizes(0, 2) == [1, 32]


def first_sizes(inputs: int, count: int) -> list[int]:
    return list(itertools.islice(predictor.batch_sizes(range(inputs), 32, 2), count))


def test_predictor_matches_pytorch_end_to_end(exported, shared_data):
    """Same files, same decode: the shipped path agrees with the checkpoint in PyTorch."""
    torch = pytest.importorskip("torch", reason="needs the train extra: pip install 'artstyle[train]'")

    from artstyle.engine.checkpoint import load_model
    from artstyle.preprocess import preprocess

    files = sorted((shared_data / "human").glob("*.jpg"))[:4] + sorted((shared_data / "anime").glob("*.jpg"))[:4]
    model, spec, _ = load_model(exported.run)
    batch = np.stack([preprocess(artstyle.open_image(f, draft_size=spec.image_size), spec.image_size,
                                 spec.mean, spec.std, spec.crop_pct) for f in files])
    with torch.inference_mode():
        expected = torch.softmax(model(torch.from_numpy(batch)), 1).numpy()
    got = np.array([[p.probs[c] for c in CLASSES] for p in artstyle.load(exported.onnx).predict(files)])
    assert np.abs(got - expected).max() <= 1e-4


def test_bad_input_raises_or_is_returned(clf, shipped, bad_corpus):
    with pytest.raises(ImageLoadError, match="empty"):
        clf.predict(bad_corpus["zero_byte"])
    mixed = [shipped.images[0], bad_corpus["truncated_jpeg"], b"not an image", shipped.images[1]]
    preds = clf.predict(mixed, errors="return")
    assert [p.ok for p in preds] == [True, False, False, True]
    assert "truncated" in preds[1].error and preds[2].source == "<bytes 2>"
    with pytest.raises(ImageLoadError):
        clf.predict(mixed)


def test_awkward_but_valid_files_are_classified(clf, bad_corpus):
    from corpus import INVALID

    good = [p for name, p in bad_corpus.items() if name not in INVALID]
    assert all(p.ok for p in clf.predict(good, errors="return"))


# ----------------------------------------------------------------------------- the model file


def test_tampered_and_truncated_models_are_refused(shipped, tmp_path):
    tampered = copy_model(shipped, tmp_path / "tampered")
    data = bytearray(tampered.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered.write_bytes(bytes(data))
    with pytest.raises(ArtstyleError, match="sha256 does not match"):
        artstyle.load(tampered)
    truncated = copy_model(shipped, tmp_path / "truncated")
    truncated.write_bytes(truncated.read_bytes()[:100_000])
    with pytest.raises(ArtstyleError, match="truncated"):
        artstyle.load(truncated)


def test_model_argument_forms(shipped, tmp_path):
    assert artstyle.load(shipped.onnx.with_suffix(".json")).classes == CLASSES
    assert artstyle.load(shipped.onnx.parent).classes == CLASSES
    run = tmp_path / "run"  # a training run's layout (what is in the weights does not matter here)
    (run / "weights").mkdir(parents=True)
    (run / "weights" / "best.safetensors").write_bytes(b"")
    with pytest.raises(ArtstyleError, match="is a training run; export it first"):
        artstyle.load(run)
    with pytest.raises(ArtstyleError, match="is a checkpoint; export it first"):
        artstyle.load(run / "weights" / "best.safetensors")
    lonely = copy_model(shipped, tmp_path / "lonely")
    lonely.with_suffix(".json").unlink()
    with pytest.raises(ArtstyleError, match="model card model.json is missing"):
        artstyle.load(lonely)


def test_missing_default_model_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(predictor, "DEFAULT_MODEL", tmp_path / "default.onnx")
    with pytest.raises(ArtstyleError, match="no default model is installed; pass --model"):
        artstyle.load()


def test_prediction_path_never_imports_torch(shipped):
    code = (
        "import sys, artstyle\n"
        f"clf = artstyle.load({str(shipped.onnx)!r})\n"
        f"print(clf.predict({str(shipped.images[0])!r}).label)\n"
        "from artstyle.cli import main\n"
        f"main(['predict', {str(shipped.images[1])!r}, '--model', {str(shipped.onnx)!r}])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'timm' not in sys.modules\n"
        "heavy = [m for m in ('pandas', 'sklearn', 'matplotlib', 'scipy', 'ray', 'pyarrow') if m in sys.modules]\n"
        "assert not heavy, f'predict imported {heavy}'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] in CLASSES


# ----------------------------------------------------------------------------- inputs


def test_expand_inputs_folders_globs_and_stdin(tmp_path):
    make_images(tmp_path / "a" / "deep", 2)
    make_images(tmp_path / "b", 2)
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    make_images(tmp_path / "a" / ".thumbnails", 1)
    folder = expand_inputs([str(tmp_path / "a")])
    assert [p.rsplit("/", 2)[-2:] for p in folder] == [["deep", "scene_0.jpg"], ["deep", "scene_1.png"]]
    assert expand_inputs([str(tmp_path / "b" / "*.png")]) == [str(tmp_path / "b" / "scene_1.png")]
    assert len(expand_inputs([str(tmp_path / "**" / "*.jpg")])) == 2  # hidden folders are globbed only by name
    stdin = io.StringIO(f"{tmp_path / 'b'}\n\nhttps://example.org/x.jpg\n{tmp_path / 'nope.jpg'}\n")
    listed = expand_inputs(["-"], stdin=stdin)
    assert listed[-2:] == ["https://example.org/x.jpg", str(tmp_path / "nope.jpg")] and len(listed) == 4
    # A missing path or a glob matching nothing stays, so it is reported rather than dropped.
    assert expand_inputs([str(tmp_path / "zz*.jpg")]) == [str(tmp_path / "zz*.jpg")]


def test_fetch_url_checks_type_size_and_reachability(shipped):
    jpeg = shipped.images[0].read_bytes()
    routes = {"/ok.jpg": ("image/jpeg", jpeg), "/page": ("text/html; charset=utf-8", b"<html></html>"),
              "/big.jpg": ("image/jpeg", b"\xff" * 5000), "/raw": ("application/octet-stream", jpeg)}
    with LocalServer(routes) as server:
        assert fetch_url(server.url("/ok.jpg"), allow_private=True) == jpeg
        assert fetch_url(server.url("/raw"), allow_private=True) == jpeg
        with pytest.raises(ImageLoadError, match=r"not an image \(server sent text/html\)"):
            fetch_url(server.url("/page"), allow_private=True)
        with pytest.raises(ImageLoadError, match="too large"):
            fetch_url(server.url("/big.jpg"), max_bytes=4000, allow_private=True)
        with pytest.raises(ImageLoadError, match="HTTP 404"):
            fetch_url(server.url("/missing.jpg"), allow_private=True)
    with pytest.raises(ImageLoadError, match="cannot reach"):
        fetch_url(closed_port_url(), timeout=2, allow_private=True)


# ----------------------------------------------------------------------------- writers


def sample_predictions():
    ok = Prediction("a.jpg", "human", 0.7, {"anime": 0.1, "cartoon": 0.2, "human": 0.7})
    return [ok, Prediction("b.jpg", error="not an image (unrecognised format)")]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json"])
def test_machine_formats_have_one_row_per_input(fmt):
    stream = io.StringIO()
    writer = open_writer(fmt, stream, CLASSES)
    for pred in sample_predictions():
        writer.write(pred)
    writer.close()
    text = stream.getvalue()
    if fmt == "csv":
        import csv

        rows = list(csv.DictReader(io.StringIO(text)))
        assert list(rows[0]) == ["path", "label", "confidence", "p_anime", "p_cartoon", "p_human", "error"]
        assert rows[0]["error"] == "" and rows[1]["label"] == "" and rows[1]["error"].startswith("not an image")
    else:
        rows = json.loads(text) if fmt == "json" else [json.loads(line) for line in text.splitlines()]
        assert rows[0]["p_human"] == 0.7 and rows[0]["error"] == ""
        assert rows[1]["label"] is None and rows[1]["error"]


def test_table_lists_successes_with_every_probability():
    stream = io.StringIO()
    writer = open_writer("table", stream, CLASSES, top_k=2)
    for pred in sample_predictions():
        writer.write(pred)
    header, row = stream.getvalue().splitlines()
    assert header.split() == ["label", "conf", "p_anime", "p_cartoon", "p_human", "top", "2", "path"]
    assert row.split() == ["human", "70.0%", "0.1000", "0.2000", "0.7000", "human=0.700", "cartoon=0.200", "a.jpg"]
