"""The Ray engine on real Ray: a local instance (2 CPUs) shared by the module, and one test that
joins a separately started head node through --address. Same rows as the local engine, a real
actor death recovered by Ray, and the same scan manifest."""

from __future__ import annotations

import csv
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="needs the ray extra: pip install 'artstyle[ray]'")
pytest.importorskip("pyarrow")

from artstyle.cli import main  # noqa: E402
from corpus import make_bad_corpus  # noqa: E402
from predict_support import make_images  # noqa: E402

pytestmark = pytest.mark.slow  # Ray starts worker processes: seconds per test, a minute on a busy machine

REPO = Path(__file__).parents[1]
SRC = REPO / "src"


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module (start-up takes seconds), stopped afterwards."""
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "WARNING")
    # The workers import this folder's ray_faults (the fault a test injects; idle otherwise).
    python_path = os.pathsep.join([str(Path(__file__).parent), *filter(None, [os.environ.get("PYTHONPATH")])])
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING",
             runtime_env={"worker_process_setup_hook": "ray_faults.install", "env_vars": {"PYTHONPATH": python_path}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory) -> Path:
    """18 drawn images of six sizes (JPEG and PNG) and every file of the bad-input corpus."""
    root = tmp_path_factory.mktemp("ray-inputs")
    make_images(root / "good", 18)
    make_bad_corpus(root / "bad")
    return root


# Lines that the driver forwards from Ray's own daemons, e.g. the GCS's error when it tries to
# kill an actor whose process has already exited ("Socket closed"), a race of Ray's teardown.
RAY_DAEMON_LINE = re.compile(r"\((pid=)?(gcs_server|raylet)\)")


def artstyle_stderr(err: str) -> list[str]:
    """What artstyle and its workers printed: stderr without the lines of Ray's daemons."""
    return [line for line in err.splitlines() if not RAY_DAEMON_LINE.search(line)]


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def assert_same_rows(got: list[dict], expected: list[dict]) -> None:
    assert [r["path"] for r in got] == [r["path"] for r in expected]
    for mine, theirs in zip(got, expected):
        assert mine.keys() == theirs.keys()
        assert (mine["label"], mine["error"]) == (theirs["label"], theirs["error"]), mine["path"]
        for key in (k for k in mine if k == "confidence" or k.startswith("p_")):
            if theirs[key] == "":
                assert mine[key] == ""
            else:
                assert float(mine[key]) == pytest.approx(float(theirs[key]), abs=1e-6), (mine["path"], key)


def test_ray_engine_writes_the_local_engines_rows(local_ray, mixed_folder, tmp_path, capsys):
    local, on_ray = tmp_path / "local.csv", tmp_path / "ray.csv"
    assert main(["predict", str(mixed_folder), "-o", str(local), "--batch-size", "4"]) == 2
    local_err = capsys.readouterr().err
    assert main(["predict", str(mixed_folder), "--engine", "ray", "-o", str(on_ray), "--batch-size", "4"]) == 2
    ray_err = capsys.readouterr().err

    expected = read_rows(local)
    assert_same_rows(read_rows(on_ray), expected)
    failed = [r for r in expected if r["error"]]
    assert 5 <= len(failed) < len(expected) and all(r["label"] for r in expected if not r["error"])
    # The same one line per failed file and the same summary on stderr.
    for row in failed:
        assert f"artstyle: error: {row['path']}: {row['error']}" in ray_err
    summary = f"{len(failed)} of {len(expected)} inputs could not be classified"
    assert summary in local_err and summary in ray_err


def test_manifest_in_parquet_folder_out(local_ray, mixed_folder, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    good = sorted(str(p) for p in (mixed_folder / "good").iterdir())
    pq.write_table(pa.table({"url": good[:9] + [str(mixed_folder / "missing.jpg")]}), tmp_path / "m.parquet")
    with open(tmp_path / "m.csv", "w", encoding="utf-8") as f:
        f.write("label,path\n" + "".join(f"x,{p}\n" for p in good[9:]))
    out = tmp_path / "results"
    code = main(["predict", str(tmp_path / "m.parquet"), str(tmp_path / "m.csv"), "--engine", "ray",
                 "-o", str(out), "--batch-size", "4"])
    assert code == 2  # the missing file

    parts = sorted(out.glob("*.parquet"))
    assert len(parts) > 1  # one file per finished block, not one written at the end
    table = pq.read_table(out).to_pylist()
    assert sorted(r["path"] for r in table) == sorted(good + [str(mixed_folder / "missing.jpg")])
    by_path = {r["path"]: r for r in table}
    assert by_path[str(mixed_folder / "missing.jpg")]["error"] == "No such file or directory"
    assert by_path[str(mixed_folder / "missing.jpg")]["label"] is None
    assert all(by_path[p]["label"] and by_path[p]["error"] == "" for p in good)
    # A second run must not mix its parts with the first one's.
    assert main(["predict", good[0], "--engine", "ray", "-o", str(out)]) == 1


def test_a_killed_actor_is_restarted_and_every_row_comes_back_once(local_ray, mixed_folder, tmp_path):
    import artstyle.ray as on_ray
    from ray_faults import MARKER_ENV

    marker = tmp_path / "actor-died"
    inputs = on_ray.read_inputs([str(mixed_folder)])
    # One actor, killed (os._exit, a real process death) when its third batch arrives, by the
    # tests' own worker hook (ray_faults): Ray must restart it and retry that batch on the new process.
    results = on_ray.predict_dataset(inputs, batch_size=4, actors=1,
                                     runtime_env={"env_vars": {MARKER_ENV: str(marker)}}).take_all()

    assert marker.exists(), "the actor did not die: the test proved nothing"
    paths = [r["path"] for r in results]
    expected = on_ray.expand_inputs([str(mixed_folder)])
    assert len(paths) == len(expected) and set(paths) == set(expected)
    assert sum(1 for r in results if r["label"] and "/good/" in r["path"]) == 18


def test_scan_on_ray_writes_the_local_manifest(local_ray, tmp_path):
    pytest.importorskip("imagehash")
    data = tmp_path / "data"
    make_images(data / "drawn", 6)
    make_bad_corpus(data / "odd")
    assert main(["data", "scan", str(data), "-o", str(tmp_path / "local.csv"), "--no-progress"]) == 0
    assert main(["data", "scan", str(data), "-o", str(tmp_path / "ray.csv"), "--engine", "ray", "--no-progress"]) == 0
    local, on_ray = read_rows(tmp_path / "local.csv"), read_rows(tmp_path / "ray.csv")
    assert on_ray == local
    assert any(r["valid"] == "False" for r in local) and any(r["valid"] == "True" for r in local)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, f"ray start exited: {process.stdout.read()[-3000:]}"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise AssertionError(f"the Ray head did not listen on {port} within {seconds:.0f} s")


def test_joins_a_separately_started_cluster_with_address(mixed_folder, tmp_path):
    """What a user does on a real cluster: `ray start --head` elsewhere, `--address` here.

    The head runs with --block so that ending that one process (SIGTERM: it drains, then stops
    the processes it started) stops exactly this cluster; `ray stop` would stop every Ray
    instance on the machine, this module's own and other users' included."""
    port = free_port()
    # Token authentication as on a real cluster: head and driver share a token. (Left to Ray, the
    # head would use a token file in ~/.ray when there is one, which an explicit address ignores.)
    env = {**os.environ, "PYTHONPATH": str(SRC), "RAY_DATA_LOG_LEVEL": "WARNING",
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    head = subprocess.Popen(
        [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", f"--port={port}",
         "--num-cpus=2", f"--temp-dir={temp_dir}", "--include-dashboard=false", "--disable-usage-stats"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # its own process group: the processes it starts, and only those
    )
    try:
        wait_for_port(port, head)
        out = tmp_path / "joined.csv"
        done = subprocess.run(
            [sys.executable, "-m", "artstyle", "predict", str(mixed_folder / "good"), "--engine", "ray",
             "--address", f"127.0.0.1:{port}", "-o", str(out), "--batch-size", "8"],
            env=env, capture_output=True, text=True, timeout=300,
        )
        assert done.returncode == 0, done.stderr
        rows = read_rows(out)
        assert len(rows) == 18 and all(r["label"] and not r["error"] for r in rows)
        # It ran on that cluster, not on a fresh local instance: the driver logged into its session.
        assert list(Path(temp_dir).glob("session_*/logs/python-core-driver-*")), "the driver did not join the head"
    finally:
        head.terminate()
        try:
            head.wait(timeout=120)
        except subprocess.TimeoutExpired:  # a loaded machine: it drains slowly
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_the_cluster_gets_the_precision_asked_for():
    """`--engine ray` ships the same file the local engine would load: by default what auto
    chooses here (int8 only where its card meets the shipping rule), else the precision asked
    for (the model bytes are what the actors run)."""
    import artstyle
    from artstyle.infer.predictor import DEFAULT_MODEL, int8_path
    from artstyle.ray import pack_model

    auto = artstyle.load().precision
    assert pack_model(None)["name"] == ("default.int8.onnx" if auto == "int8" else "default.onnx")
    fp32 = pack_model(None, "fp32")
    assert fp32["name"] == "default.onnx" and fp32["bytes"] == DEFAULT_MODEL.read_bytes()
    assert pack_model(None, "int8")["bytes"] == int8_path(DEFAULT_MODEL).read_bytes()


def test_videos_are_spread_over_actors_and_their_rows_join_the_images_in_order(local_ray, shared_data, tmp_path,
                                                                                 capsys):
    from predict_support import video_frames, write_video

    folder = tmp_path / "films"
    folder.mkdir()
    frames = video_frames(sorted((shared_data / "cartoon").glob("*.jpg"))[:6])
    for name, fourcc in (("b.avi", "MJPG"), ("d.mp4", "mp4v"), ("e.mkv", "MJPG")):
        assert write_video(folder / name, frames, fourcc, 6.0)
    (folder / "d.mp4").write_bytes((folder / "d.mp4").read_bytes()[:3000])  # truncated: no moov atom
    for name, image in zip(("a.jpg", "c.jpg"), sorted((shared_data / "human").glob("*.jpg"))):
        shutil.copy(image, folder / name)
    local, on_ray = tmp_path / "local.csv", tmp_path / "ray.csv"
    assert main(["predict", str(folder), "-o", str(local), "--frames", "4"]) == 2
    assert main(["predict", str(folder), "--engine", "ray", "--actors", "2", "--cpus-per-actor", "0.5",
                 "-o", str(on_ray), "--frames", "4"]) == 2
    err = capsys.readouterr().err
    expected, got = read_rows(local), read_rows(on_ray)
    assert [Path(r["path"]).name for r in got] == ["a.jpg", "b.avi", "c.jpg", "d.mp4", "e.mkv"]
    assert_same_rows(got, expected)
    for mine, theirs in zip(got, expected):
        assert [mine[k] for k in mine if k.startswith(("frames", "share_"))] == \
               [theirs[k] for k in theirs if k.startswith(("frames", "share_"))]
    assert got[1]["frames"] == "4" and got[0]["frames"] == "" and got[3]["error"].startswith("cannot open this MP4")
    assert f"artstyle: error: {folder / 'd.mp4'}: {got[3]['error']}" in err


def test_a_manifests_videos_are_videos_and_per_frame_records_come_back(local_ray, shared_data, tmp_path, capsys):
    """Videos named by a manifest (which only the workers read) are classified as videos, by
    content as locally (one named .bin), and --per-frame gathers every video's frame records,
    the listed ones' and the manifest's, in the rows' order: the local engine's records."""
    import json

    from predict_support import video_frames, write_video

    frames = video_frames(sorted((shared_data / "anime").glob("*.jpg"))[:6])
    assert write_video(tmp_path / "listed.avi", frames, "MJPG", 6.0)
    assert write_video(tmp_path / "clip.mkv", frames[::-1], "MJPG", 6.0)
    shutil.copy(tmp_path / "listed.avi", tmp_path / "renamed.bin")
    photo = shutil.copy(sorted((shared_data / "human").glob("*.jpg"))[0], tmp_path / "photo.jpg")
    named = [str(tmp_path / n) for n in ("photo.jpg", "clip.mkv", "renamed.bin")]
    (tmp_path / "m.csv").write_text("path\n" + "".join(f"{p}\n" for p in named))
    listed = str(tmp_path / "listed.avi")
    on_ray, local = tmp_path / "ray.csv", tmp_path / "local.csv"
    assert main(["predict", listed, str(tmp_path / "m.csv"), "--engine", "ray", "-o", str(on_ray), "--frames", "4",
                 "--per-frame", str(tmp_path / "ray.jsonl")]) == 0
    assert main(["predict", listed, *named, "-o", str(local), "--frames", "4",
                 "--per-frame", str(tmp_path / "local.jsonl")]) == 0
    assert artstyle_stderr(capsys.readouterr().err) == []
    got, expected = read_rows(on_ray), read_rows(local)
    assert_same_rows(got, expected)
    assert [r["frames"] for r in got] == ["4", "", "4", "4"] and str(photo) == got[1]["path"]
    assert all(r[k] == e[k] for r, e in zip(got, expected) for k in r if k.startswith(("share_", "duration")))
    records = [json.loads(line) for line in (tmp_path / "ray.jsonl").read_text().splitlines()]
    wanted = [json.loads(line) for line in (tmp_path / "local.jsonl").read_text().splitlines()]
    assert [(r["path"], r["frame"], r["time_s"], r["label"]) for r in records] == \
           [(r["path"], r["frame"], r["time_s"], r["label"]) for r in wanted]
    assert len(records) == 12 and {r["path"] for r in records} == {listed, named[1], named[2]}
    assert all(r["p_anime"] == pytest.approx(w["p_anime"], abs=1e-5) for r, w in zip(records, wanted))
    # Parquet parts are written by the workers: the records have no way back there.
    assert main(["predict", listed, "--engine", "ray", "-o", str(tmp_path / "parts"),
                 "--per-frame", str(tmp_path / "x.jsonl")]) == 1
    assert "--per-frame with --engine ray needs CSV output" in capsys.readouterr().err
