"""How fast ``artstyle predict`` classifies a film: a 20-minute 720p H.264 video, with the default
16 frames and with ``--every 10``, each read both ways: from keyframes (the default) and
frame-exact (``--exact-frames``).

    python bench/bench_video.py [--data ../shared/data/artstyle-v1] [--video /tmp/film.mp4] [--rounds 3]

The test video is made once with Debian's ffmpeg (``apt-get install ffmpeg``) into the temp
folder, never the repository: 24 artstyle-v1 images (8 per class) at 1280x720, 5 s each, looped
for 20 minutes at 24 fps, with temporal noise so that every frame carries data to decode (a
still slideshow would decode unrealistically fast), x264 ``ultrafast`` with its default
keyframe interval (250 frames). The classes take turns every 5 s, so which class a sample of 16
frames favours depends on which slides it hits: the labels of the two reading modes differ.

For each sampling and mode, three timings on the same frames (wall seconds, the best of
``--rounds``): end to end (``Classifier.predict_video``), decode only (the same reads and crops,
no model) and model only (the same number of crops through the model, in the same batches).
The decode and model shares are each one's part of their sum. Beside them, what each way of
reaching a frame costs, which sets ``video.GRAB_MAX``, ``KEYFRAME_PASS_GAIN`` and
``SEEK_MIN_GAP``: grabbing every frame; a frame-exact seek; a read aligned on a keyframe (the
frame 16 after it, found by the demux-only capture); and one keyframe-only pass (FFmpeg's
skip_frame through ``OPENCV_FFMPEG_CAPTURE_OPTIONS``), per keyframe, on one decoding thread and
on FFmpeg's default. Writes bench/results/video.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "video.json"

from _provenance import write_results  # noqa: E402  (bench/ is on the path of a script run from it)
DEFAULT_VIDEO = Path(tempfile.gettempdir()) / "artstyle-bench" / "film_720p_20min.mp4"
DURATION_S, FPS, WIDTH, HEIGHT = 1200, 24, 1280, 720
SAMPLINGS = {"frames_16": {"frames": 16, "every": None}, "every_10s": {"frames": 16, "every": 10.0}}
MODES = {"keyframes": False, "exact": True}  # exact_frames


def make_video(path: Path, data: Path) -> None:
    """The 20-minute test film, from real images (see the module docstring)."""
    if shutil.which("ffmpeg") is None:
        sys.exit("ffmpeg is needed to make the test video: apt-get install -y ffmpeg")
    stills = path.parent / "stills"
    stills.mkdir(parents=True, exist_ok=True)
    per_class = [sorted((data / c).glob("*.jpg"))[:8] for c in ("anime", "cartoon", "human")]
    for i, image in enumerate(p for trio in zip(*per_class) for p in trio):  # the classes take turns
        img = cv2.imread(str(image))
        scale = max(WIDTH / img.shape[1], HEIGHT / img.shape[0])
        img = cv2.resize(img, (round(img.shape[1] * scale) + 1, round(img.shape[0] * scale) + 1))
        top, left = (img.shape[0] - HEIGHT) // 2, (img.shape[1] - WIDTH) // 2
        cv2.imwrite(str(stills / f"{i:03d}.jpg"), img[top:top + HEIGHT, left:left + WIDTH])
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-stream_loop", "-1", "-framerate", "0.2",
                    "-i", str(stills / "%03d.jpg"), "-t", str(DURATION_S),
                    "-vf", f"fps={FPS},noise=alls=6:allf=t,format=yuv420p", "-c:v", "libx264", "-preset", "ultrafast",
                    str(path)], check=True)


def best_of(rounds: int, run) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(rounds):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def decode_only(clf, path: Path, frames: int, every: float | None, exact: bool) -> list[np.ndarray]:
    """What predict_video does before the model: the same plan, reads and crops."""
    from artstyle.infer.video import frame_plan, open_frames
    from artstyle.preprocess import to_crop

    with open_frames(path, str(path), exact) as reader:
        plan = frame_plan(reader.frame_count, reader.fps, frames, every)
        return [clf.model_input(to_crop(rgb, clf.image_size, clf.crop_pct, name=str(path)))
                for _, _, rgb in reader.read(plan)]


def model_only(clf, crops: list[np.ndarray]) -> None:
    for start in range(0, len(crops), clf.batch_size):
        clf.run(np.stack(crops[start:start + clf.batch_size]))


def per_call_ms(run, count: int) -> float:
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) / count * 1000


def read_strategies(path: Path) -> dict:
    """Milliseconds per frame reached each way on this video (see the module docstring)."""
    from artstyle.infer.video import OPENCV_SEEK_BACK, Keyframes, open_capture

    capture = open_capture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS)
    grab_ms = per_call_ms(lambda: [capture.grab() for _ in range(480)], 480)
    targets = [int(t) for t in np.linspace(1000, DURATION_S * FPS - 1000, 12)]

    def seek_and_read(indices) -> None:
        for index in indices:
            capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
            capture.read()

    exact_ms = per_call_ms(lambda: seek_and_read(targets), len(targets))
    keyframes = Keyframes(str(path), fps)
    aligned_ms = per_call_ms(
        lambda: seek_and_read(keyframes.around(t, t + 1000)[0] + OPENCV_SEEK_BACK for t in targets), len(targets))
    keyframes.close()
    capture.release()
    passes = {}
    for name, params in (("one_thread", [cv2.CAP_PROP_N_THREADS, 1]), ("ffmpeg_default_threads", [])):
        only_keys = open_capture(str(path), params, keyframes_only=True)
        count, start = 0, time.perf_counter()
        while only_keys.grab():
            count += 1
        passes[name] = round((time.perf_counter() - start) / count * 1000, 2)
        only_keys.release()
    return {"grab_ms_per_frame": round(grab_ms, 2), "exact_seek_ms_per_frame": round(exact_ms, 1),
            "keyframe_aligned_read_ms_per_frame": round(aligned_ms, 1),
            "keyframe_pass_ms_per_keyframe": passes, "keyframes": count,
            "exact_seek_costs_grabs": round(exact_ms / grab_ms), "aligned_read_costs_grabs": round(aligned_ms / grab_ms),
            "aligned_read_over_pass_keyframe": round(aligned_ms / passes["one_thread"], 1)}


def bench_sampling(clf, path: Path, frames: int, every: float | None, exact: bool, rounds: int) -> dict:
    end_to_end, pred = best_of(rounds, lambda: clf.predict_video(path, frames=frames, every=every, exact_frames=exact))
    decode_s, crops = best_of(rounds, lambda: decode_only(clf, path, frames, every, exact))
    model_s, _ = best_of(rounds, lambda: model_only(clf, crops))
    times = [f.time_s for f in pred.per_frame]
    return {
        "frames_used": pred.frames, "label": pred.label, "shares": pred.shares,
        "end_to_end_s": round(end_to_end, 3),
        "video_seconds_per_wall_second": round(pred.duration_s / end_to_end, 1),
        "frames_per_s": round(pred.frames / end_to_end, 2),
        "decode_only_s": round(decode_s, 3), "model_only_s": round(model_s, 3),
        "decode_share": round(decode_s / (decode_s + model_s), 3),
        "model_share": round(model_s / (decode_s + model_s), 3),
        "first_times_s": times[:4],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "artstyle-v1")
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--rounds", type=int, default=3, help="timings per measurement, the best kept")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    import artstyle

    if not args.video.is_file():
        make_video(args.video, args.data)
    clf = artstyle.load()
    results = {
        "model": clf.path.name, "opencv": cv2.__version__,
        "video": {"duration_s": DURATION_S, "size": f"{WIDTH}x{HEIGHT}", "fps": FPS, "codec": "H.264 (x264 ultrafast)",
                  "bytes": args.video.stat().st_size},
        "read_strategies": read_strategies(args.video),
        "samplings": {name: {mode: bench_sampling(clf, args.video, exact=exact, rounds=args.rounds, **options)
                             for mode, exact in MODES.items()}
                      for name, options in SAMPLINGS.items()},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    write_results(RESULTS, results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
