"""Video classification end to end: real videos written by OpenCV from real artstyle-v1 images,
in every container and codec this OpenCV build writes, the shipped model, the CLI's rows and
per-frame records, and damaged files."""

from __future__ import annotations

import base64
import csv
import gc
import io
import json
import os
import shutil
import subprocess
import warnings
import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import artstyle
from artstyle.cli import main
from artstyle.infer import VideoPrediction
from artstyle.infer.video import container_of, frame_plan, is_video
from predict_support import video_frames
from predict_support import write_video as write_frames

SIZE = 256
FPS = 8.0
# (fourcc, suffix): the codecs and containers tried; those this build cannot write are skipped.
CODECS = [("mp4v", ".mp4"), ("MJPG", ".avi"), ("mp4v", ".mov"), ("MJPG", ".mkv"), ("VP80", ".webm")]
VIDEO_COLUMNS = ["frames", "duration_s", "share_anime", "share_cartoon", "share_human"]


@pytest.fixture(scope="module")
def clf():
    return artstyle.load()


def frames_of(folder: Path, count: int) -> list[np.ndarray]:
    """The first ``count`` images of a class folder as SIZE x SIZE BGR frames."""
    return video_frames(sorted(folder.glob("*.jpg"))[:count], SIZE)


def write_video(path: Path, frames: list[np.ndarray], fourcc: str, fps: float = FPS) -> Path:
    if not write_frames(path, frames, fourcc, fps):
        pytest.skip(f"this OpenCV build cannot write {fourcc} in {path.suffix}")
    return path


def truncated(path: Path, dest: Path) -> Path:
    dest.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return dest


def run_cli(capsys, *args) -> tuple[int, list[dict], str]:
    code = main(["predict", *map(str, args), "--format", "csv"])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, list(csv.DictReader(io.StringIO(out))), err


@pytest.fixture(scope="module")
def anime(shared_data):
    return frames_of(shared_data / "anime", 8)


@pytest.mark.parametrize("fourcc,suffix", CODECS, ids=[f"{f}{s}" for f, s in CODECS])
def test_an_anime_video_is_anime_and_its_truncated_copy_an_error(clf, anime, tmp_path, fourcc, suffix):
    video = write_video(tmp_path / f"anime{suffix}", [f for f in anime for _ in range(2)], fourcc)
    assert is_video(video) and container_of(video.read_bytes()[:64]) is not None
    pred = clf.predict_video(video, frames=6)
    assert isinstance(pred, VideoPrediction) and pred.ok
    assert pred.label == "anime" and pred.shares["anime"] >= 0.8
    assert pred.frames == 6 and pred.duration_s == pytest.approx(16 / FPS)
    assert pred.probs["anime"] == pytest.approx(np.mean([f.probs["anime"] for f in pred.per_frame]), abs=1e-6)
    broken = clf.predict(truncated(video, tmp_path / f"broken{suffix}"), errors="return", frames=6)
    assert not broken.ok and broken.label is None
    assert "truncated or corrupt" in broken.error and "\n" not in broken.error


def test_a_video_that_switches_from_people_to_cartoon_reports_both_halves(shared_data, tmp_path, capsys):
    frames = frames_of(shared_data / "human", 8) + frames_of(shared_data / "cartoon", 8)
    video = write_video(tmp_path / "switch.avi", frames, "MJPG")
    per_frame = tmp_path / "frames.jsonl"
    code, (row,), err = run_cli(capsys, video, "--frames", "8", "--per-frame", per_frame)
    assert code == 0 and err == "" and row["error"] == ""
    assert list(row)[-len(VIDEO_COLUMNS) - 1:-1] == VIDEO_COLUMNS
    assert row["frames"] == "8" and float(row["duration_s"]) == pytest.approx(16 / FPS)
    assert float(row["share_human"]) == pytest.approx(0.5, abs=0.13)
    assert float(row["share_cartoon"]) == pytest.approx(0.5, abs=0.13)
    records = [json.loads(line) for line in per_frame.read_text().splitlines()]
    # 8 frames over the middle 90 % of 16: the centres of eight equal parts of frames 0.8..15.2.
    assert [r["frame"] for r in records] == [1, 3, 5, 7, 8, 10, 12, 14]
    assert all(r["path"] == str(video) and r["time_s"] == pytest.approx(r["frame"] / FPS) for r in records)
    first_half = [r["label"] for r in records if r["frame"] < 8]
    assert first_half.count("human") >= 3
    probs = np.array([[r[f"p_{c}"] for c in ("anime", "cartoon", "human")] for r in records])
    assert float(row["p_human"]) == pytest.approx(probs.mean(axis=0)[2], abs=1e-5)


def test_every_seconds_samples_from_the_start(clf, anime, tmp_path):
    video = write_video(tmp_path / "anime.mp4", anime * 3, "mp4v", fps=4.0)  # 24 frames, 6 s
    pred = clf.predict_video(video, every=1.5)
    assert [f.time_s for f in pred.per_frame] == [0.0, 1.5, 3.0, 4.5]
    assert [f.index for f in pred.per_frame] == [0, 6, 12, 18]
    assert frame_plan(24, 4.0, every=1.5) == [0, 6, 12, 18]


def test_an_every_shorter_than_a_frame_takes_every_frame_at_once(clf, anime, tmp_path):
    """The server takes any positive ``?every=``: one far below a frame's length samples each
    frame once, and is refused over the frame limit before anything is planned (it once counted
    up to the video's length over ``every``: minutes of a decode thread, or an OverflowError)."""
    assert frame_plan(24, 4.0, every=1e-9) == frame_plan(24, 4.0, every=5e-324) == list(range(24))
    video = write_video(tmp_path / "anime.mp4", anime * 3, "mp4v", fps=4.0)
    with pytest.raises(artstyle.ImageLoadError, match="is 24 frames of this 6-second video, over the limit of 16"):
        clf.predict_video(video, every=5e-324, max_frames=16)


def test_animated_gif_and_webp_are_videos_a_still_gif_an_image(clf, shared_data, tmp_path):
    images = [Image.open(p).convert("RGB").resize((128, 128)) for p in sorted((shared_data / "anime").glob("*.jpg"))[:4]]
    for suffix in (".gif", ".webp"):
        path = tmp_path / f"anim{suffix}"
        images[0].save(path, save_all=True, append_images=images[1:], duration=250, loop=0)
        pred = clf.predict(path, frames=4)
        assert isinstance(pred, VideoPrediction) and pred.frames == 4, suffix
        assert [f.time_s for f in pred.per_frame] == [0.0, 0.25, 0.5, 0.75] and pred.duration_s == 1.0
    images[0].save(tmp_path / "still.gif")
    still = clf.predict(tmp_path / "still.gif")
    assert not isinstance(still, VideoPrediction) and still.ok


def test_an_animation_pillow_cannot_read_is_an_error_and_its_file_is_closed(shared_data, tmp_path):
    """Pillow reads what OpenCV's FFmpeg cannot (animated WebP); a damaged file must not stay open."""
    from artstyle.infer.video import PillowFrames

    images = [Image.open(p).convert("RGB").resize((128, 128)) for p in sorted((shared_data / "anime").glob("*.jpg"))[:4]]
    whole = io.BytesIO()
    images[0].save(whole, "GIF", save_all=True, append_images=images[1:], duration=250, loop=0)
    path = tmp_path / "truncated.gif"
    path.write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with pytest.raises(artstyle.ImageLoadError, match="cannot read this GIF animation: truncated or corrupt"):
            PillowFrames(str(path), "truncated.gif", "GIF")
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)], [str(w.message) for w in caught]


def test_videos_are_known_by_content_in_folders_bytes_and_lists(clf, anime, shared_data, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    write_video(folder / "clip.mkv", anime, "MJPG")
    image = sorted((shared_data / "human").glob("*.jpg"))[0]
    (folder / "photo.jpg").write_bytes(image.read_bytes())
    (folder / "notes.txt").write_text("not picked up")
    code, rows, _ = run_cli(capsys, folder, "--frames", "4")
    assert code == 0 and [Path(r["path"]).name for r in rows] == ["clip.mkv", "photo.jpg"]
    assert rows[0]["frames"] == "4" and rows[1]["label"] == "human"
    assert all(rows[1][c] == "" for c in VIDEO_COLUMNS)  # an image's video columns are empty
    # A video is a video whatever its name, as bytes too.
    renamed = tmp_path / "clip.dat"
    renamed.write_bytes((folder / "clip.mkv").read_bytes())
    preds = clf.predict([renamed, renamed.read_bytes(), image], frames=4)
    assert [type(p).__name__ for p in preds] == ["VideoPrediction", "VideoPrediction", "Prediction"]
    assert preds[0].probs == pytest.approx(preds[1].probs)


def test_bad_videos_get_one_line_errors_and_the_others_their_rows(anime, tmp_path, capsys):
    good = write_video(tmp_path / "good.avi", anime, "MJPG")
    bad = {
        "truncated.avi": truncated(good, tmp_path / "truncated.avi"),
        "truncated.mp4": truncated(write_video(tmp_path / "whole.mp4", anime, "mp4v"), tmp_path / "truncated.mp4"),
        "empty.mp4": tmp_path / "empty.mp4",
        "text.mp4": tmp_path / "text.mp4",
        "audio.mp4": tmp_path / "audio.mp4",
        "header_only.mkv": tmp_path / "header_only.mkv",
    }
    bad["empty.mp4"].write_bytes(b"")
    bad["text.mp4"].write_text("this is not a video\n")
    with wave.open(str(bad["audio.mp4"]), "wb") as audio:  # audio, no video track
        audio.setnchannels(1), audio.setsampwidth(2), audio.setframerate(8000)
        audio.writeframes(b"\0\0" * 8000)
    bad["header_only.mkv"].write_bytes(b"\x1a\x45\xdf\xa3" + b"\0" * 60)  # no readable frame
    code, rows, err = run_cli(capsys, good, *bad.values(), "--frames", "4")
    assert code == 2
    by_name = {Path(r["path"]).name: r for r in rows}
    assert by_name["good.avi"]["label"] == "anime" and by_name["good.avi"]["error"] == ""
    expected = {"truncated.avi": "truncated or corrupt: the frame at", "truncated.mp4": "cannot open this MP4 file",
                "empty.mp4": "empty file (0 bytes)", "text.mp4": "not a video (unrecognised content",
                "audio.mp4": "not a video (WAVE audio", "header_only.mkv": "cannot open this Matroska file"}
    for name, start in expected.items():
        assert by_name[name]["error"].startswith(start) and by_name[name]["label"] == "", name
    errors = [line for line in err.splitlines() if line.startswith("artstyle: error:")]
    assert errors == [f"artstyle: error: {bad[n]}: {by_name[n]['error']}" for n in bad]
    assert err.splitlines()[-1] == f"artstyle: {len(bad)} of {len(bad) + 1} inputs could not be classified"


def test_bad_sampling_values_are_refused(clf, capsys, tmp_path):
    with pytest.raises(ValueError):
        clf.predict([tmp_path], every=0)
    assert main(["predict", str(tmp_path), "--frames", "0"]) == 1
    assert "--frames must be at least 1" in capsys.readouterr().err
    same = str(tmp_path / "out.csv")  # both writers would truncate it and interleave their lines
    assert main(["predict", str(tmp_path), "-o", same, "--per-frame", same]) == 1
    assert "--per-frame needs a file of its own" in capsys.readouterr().err and not os.path.exists(same)


def test_the_server_returns_a_video_row_with_a_frame_strip(clf, anime, shared_data, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from artstyle.serve import ServeSettings, create_app

    video = write_video(tmp_path / "anime.webm", anime, "VP80")
    broken = truncated(write_video(tmp_path / "whole.mp4", anime, "mp4v"), tmp_path / "broken.mp4")
    photo = sorted((shared_data / "human").glob("*.jpg"))[0]
    files = [("files", (p.name, p.read_bytes(), "application/octet-stream")) for p in (video, photo, broken)]
    with TestClient(create_app(ServeSettings(), clf)) as client:
        response = client.post("/v1/predict?frames=5", files=files)
        raw = client.post("/v1/predict", content=video.read_bytes(), headers={"Content-Type": "video/webm"})
    assert response.status_code == 200 and raw.status_code == 200
    clip, image, bad = response.json()["results"]
    expected = clf.predict_video(video, frames=5)
    assert clip["label"] == expected.label == "anime" and clip["frames"] == 5
    assert clip["probabilities"] == pytest.approx(expected.probs) and clip["shares"] == expected.shares
    assert [f["time_s"] for f in clip["frame_strip"]] == [f.time_s for f in expected.per_frame]
    thumbnail = clip["frame_strip"][0]["thumbnail"]
    assert thumbnail.startswith("data:image/jpeg;base64,")
    assert Image.open(io.BytesIO(base64.b64decode(thumbnail.split(",", 1)[1]))).size == (96, 96)
    assert image["label"] == "human" and image["frames"] is None and image["frame_strip"] is None
    assert bad["label"] is None and bad["error"].startswith("cannot open this MP4 file")
    assert raw.json()["results"][0]["frames"] == 8  # 16 asked of 8 frames: each once


def test_a_video_whose_frames_are_all_damaged_and_an_audio_only_mp4(clf, anime, tmp_path):
    good = write_video(tmp_path / "good.avi", anime, "MJPG")
    data = bytearray(good.read_bytes())
    movi = data.index(b"movi") + 4  # the frames' chunks start here; the headers before stay intact
    data[movi:] = bytes(len(data) - movi)
    (tmp_path / "blank.avi").write_bytes(bytes(data))
    blank = clf.predict(tmp_path / "blank.avi", errors="return", frames=4)
    assert not blank.ok and "cannot be decoded" in blank.error
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg (apt-get install ffmpeg) makes the audio-only MP4")
    audio = tmp_path / "audio.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", str(audio)],
                   check=True)
    silent = clf.predict(audio, errors="return")
    assert not silent.ok and "no video track" in silent.error


def test_a_missing_last_frame_is_tolerated_a_missing_half_is_not(clf, shared_data, tmp_path):
    video = write_video(tmp_path / "whole.avi", frames_of(shared_data / "anime", 16), "MJPG")
    data = video.read_bytes()
    (tmp_path / "tail.avi").write_bytes(data[: int(len(data) * 0.9)])  # the 16th frame's data is cut
    every_frame = clf.predict(tmp_path / "tail.avi", every=1 / FPS)
    assert every_frame.ok and [f.index for f in every_frame.per_frame] == list(range(15))
    half = clf.predict(truncated(video, tmp_path / "half.avi"), every=1 / FPS, errors="return")
    assert half.error.startswith("truncated or corrupt: the frame at")


# ------------------------------------------------------------------ reading far frames from keyframes

H264_FPS = 24


def h264_video(path: Path, frames: list[np.ndarray], keyint: int) -> Path:
    """``frames`` as H.264 in MP4 with a keyframe every ``keyint`` frames exactly and B-frames,
    by Debian's ffmpeg (OpenCV's writer always puts a keyframe every 12 frames)."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg (apt-get install ffmpeg) writes the H.264 video")
    height, width = frames[0].shape[:2]
    subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}",
                    "-r", str(H264_FPS), "-i", "-", "-c:v", "libx264", "-preset", "veryfast", "-bf", "2",
                    "-g", str(keyint), "-keyint_min", str(keyint), "-sc_threshold", "0", "-pix_fmt", "yuv420p",
                    str(path)], input=b"".join(f.tobytes() for f in frames), check=True)
    return path


@pytest.fixture(scope="module")
def moving_frames(shared_data):
    """20 s at 24 fps: a real image a second, each moving a pixel a frame, so no two frames match."""
    stills = [f for c in ("human", "cartoon") for f in frames_of(shared_data / c, 10)]
    return [np.roll(cv2_resize(stills[i // H264_FPS], 128), i, axis=1) for i in range(20 * H264_FPS)]


def cv2_resize(frame: np.ndarray, size: int) -> np.ndarray:
    import cv2

    return cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)


def every_frame(path: Path) -> list[np.ndarray]:
    """The video decoded frame by frame from the start, in RGB: what each index must show."""
    import cv2

    capture, frames = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG), []
    while (frame := capture.read()[1]) is not None:
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    return frames


def read_plan(path: Path, exact: bool = False, **sampling) -> tuple[list[int], list[tuple[int, float, np.ndarray]]]:
    from artstyle.infer.video import frame_plan, open_frames

    with open_frames(path, str(path), exact) as reader:
        plan = frame_plan(reader.frame_count, reader.fps, **sampling)
        return plan, list(reader.read(plan))


def test_far_frames_come_from_keyframes_and_are_the_frames_at_their_times(clf, moving_frames, tmp_path, monkeypatch):
    from artstyle.infer.video import CAPTURE_OPTIONS, KEYFRAME_READS, sampling_windows

    if not KEYFRAME_READS:
        pytest.skip("OpenCV 4's demux-only mode gives packets no time: every frame is read exact there")

    video = h264_video(tmp_path / "gop24.mp4", moving_frames, keyint=24)
    truth = every_frame(video)
    assert len(truth) == len(moving_frames)
    # Two frames far apart, among many keyframes: each is read as the frame 16 after a keyframe
    # near its target (17 decodes), within the target's half of the video.
    plan, reads = read_plan(video, frames=2)
    assert plan == [132, 348]
    windows = sampling_windows(plan, len(truth))
    for (index, time_s, rgb), (low, high) in zip(reads, windows):
        assert index % 24 == 16 and low <= index <= high and index not in plan
        assert time_s == pytest.approx(index / H264_FPS) and np.array_equal(rgb, truth[index])
    # One every 1.5 s (36 frames): dense among the keyframes, so one keyframe-only pass takes the
    # keyframe nearest each target. The user's capture options are left as they were.
    monkeypatch.setenv(CAPTURE_OPTIONS, "probesize;5000000")
    plan, reads = read_plan(video, every=1.5)
    keyframes = [i for i, _, _ in reads]
    assert keyframes == [round(t / 24) * 24 if t % 24 != 12 else t - 12 for t in plan]
    assert all(np.array_equal(rgb, truth[i]) and t == pytest.approx(i / H264_FPS) for i, t, rgb in reads)
    assert os.environ[CAPTURE_OPTIONS] == "probesize;5000000"
    monkeypatch.delenv(CAPTURE_OPTIONS)
    assert [i for i, _, _ in read_plan(video, every=1.5)[1]] == keyframes
    assert CAPTURE_OPTIONS not in os.environ
    pred = clf.predict_video(video, every=1.5)
    assert [f.index for f in pred.per_frame] == keyframes
    assert [f.time_s for f in pred.per_frame] == [round(i / H264_FPS, 3) for i in keyframes]
    # Frame-exact on request: the planned frames themselves.
    plan, reads = read_plan(video, exact=True, frames=2)
    assert [i for i, _, _ in reads] == plan and all(np.array_equal(rgb, truth[i]) for i, _, rgb in reads)
    assert clf.predict_video(video, frames=2, exact_frames=True).per_frame[1].time_s == 348 / H264_FPS


def test_without_a_keyframe_near_or_with_every_frame_one_the_planned_frames_are_read(moving_frames, tmp_path):
    one_keyframe = h264_video(tmp_path / "one_keyframe.mp4", moving_frames, keyint=10_000)
    plan, reads = read_plan(one_keyframe, frames=3)
    assert [i for i, _, _ in reads] == plan
    assert np.array_equal(reads[2][2], every_frame(one_keyframe)[plan[2]])
    mjpeg = write_video(tmp_path / "intra.avi", moving_frames[:240], "MJPG", fps=H264_FPS)  # every frame a keyframe
    plan, reads = read_plan(mjpeg, frames=3)
    assert [i for i, _, _ in reads] == plan and min(np.diff(plan)) > 32
