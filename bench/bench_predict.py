"""Prediction throughput and cold start, side by side in one run.

    python bench/bench_predict.py [--images 2000] [--model M.onnx] [--data ../shared/data/artstyle-v1]

With an int8 model beside the fp32 one (M.int8.onnx, from `artstyle export --int8`), its paths
run in the same rounds: `artstyle predict --precision int8`, the in-process predictor and
model-only, so int8 against fp32 and int8 end to end against model-only are side by side.

Compares, on the same images in one run: the images are cut into --rounds chunks and every path
runs on each chunk in turn (rotating the order), so all figures share the machine's load even
when other work comes and goes. The paths:
  - `artstyle predict DIR` as a user runs it (subprocess: start, model load, decode, inference, CSV)
  - the naive path: the same model as a timm module in eager PyTorch, full PIL decode, batch 32
  - anime-or-not (PyPI): its ONNX model with its own torchvision transforms, one session, batch
    32; and its published `predict_image()` per file (a session per call; it refuses images not
    larger than 224 px, so it runs on the ones it accepts)
  - ONNX Runtime model-only throughput at the model's input size, run as the predictor runs it
    (``streams`` batches at once, one thread each), and the in-process end-to-end predictor
    beside it; for the int8 model also both with one batch at a time over all threads
    (``streams=1``, the predictor before streams), so the gain of streams is measured too
  - cold start of `artstyle predict one.jpg` (process start to answer)
  - where the CPU goes, counted inside the same runs: the CPU time of the model calls (read on
    their own threads, one thread per stream) against the whole process's, and the cores each
    path kept busy. This VM's speed drifts by 10-40 % within minutes (no steal time shows in
    /proc/stat), so two paths timed a minute apart can see different machines; a share of CPU
    counted within one run cannot. End to end over model-only is then also given as
    (model CPU / process CPU, end to end) x (cores busy end to end / cores busy model-only),
    beside the ratio of the two paths' images/s.
Prints a Markdown table and writes bench/results/predict.json. Needs artstyle[train] (torch for
the naive path and, without a shipped model, to export one).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _provenance import write_results

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "artstyle-v1"
RESULTS = REPO / "bench" / "results" / "predict.json"
CACHE = Path(tempfile.gettempdir()) / "artstyle-bench"
BATCH = 32


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    import onnxruntime
    import torch

    return {"nproc": len(os.sched_getaffinity(0)), "cpu": cpu, "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__, "torch": torch.__version__,
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()]}


def pick_images(data: Path, count: int) -> list[Path]:
    """``count`` images spread evenly over the sorted dataset, so every class and source is in."""
    from artstyle.infer.sources import images_in_folder

    every = images_in_folder(str(data))
    if len(every) < count:
        sys.exit(f"{data} has {len(every)} images, fewer than {count}")
    return [Path(every[int(i * len(every) / count)]) for i in range(count)]


def link_chunk(files: list[Path], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        os.symlink(f.resolve(), folder / f.name)  # `artstyle predict DIR` sees exactly this chunk
    return folder


def bench_model(explicit: str | None) -> tuple[Path, Path, str]:
    """(onnx, checkpoint for the PyTorch path, description): the given or shipped model, else a
    freshly exported EfficientNet-Lite0 at 224 px (ImageNet backbone, random head: same cost)."""
    from artstyle.infer.predictor import DEFAULT_MODEL

    if explicit:
        onnx = Path(explicit)
        return onnx, onnx.with_suffix(".safetensors"), f"given: {onnx}"
    if DEFAULT_MODEL.is_file():
        return DEFAULT_MODEL, DEFAULT_MODEL.with_suffix(".safetensors"), "shipped default model"
    onnx = CACHE / "lite0-224" / "model.onnx"
    if not onnx.is_file():
        from artstyle.engine.checkpoint import save_model
        from artstyle.engine.export import export_onnx
        from artstyle.models import create_model

        model, spec = create_model("efficientnet_lite0", ["anime", "cartoon", "human"], image_size=224)
        save_model(onnx.parent / "run" / "weights" / "best", model, spec, metrics={})
        export_onnx(onnx.parent / "run", onnx, with_weights=True)
    return onnx, onnx.with_suffix(".safetensors"), "fresh EfficientNet-Lite0 export at 224 px (no shipped model)"


def timed(fn) -> float:
    tick = time.perf_counter()
    fn()
    return time.perf_counter() - tick


def batches(items, size=BATCH):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def interleaved(runners: dict, chunks: list[list[Path]], folders: list) -> dict:
    """``{key: [seconds, images]}``: every runner on each chunk in turn, the order rotating from
    chunk to chunk so that no path always runs first and all see the same machine. A runner
    returns its seconds, or (seconds, images) when it ran on fewer images than the chunk."""
    totals = {key: [0.0, 0] for key in runners}
    for r, (chunk, folder) in enumerate(zip(chunks, folders)):
        keys = list(runners)
        for key in keys[r % len(keys):] + keys[:r % len(keys)]:
            result = runners[key](chunk, folder)
            seconds, count = result if isinstance(result, tuple) else (result, len(chunk))
            totals[key][0] += seconds
            totals[key][1] += count
        print(f"  round {r + 1}/{len(chunks)}: " + ", ".join(
            f"{'/'.join(map(str, k)) if isinstance(k, tuple) else k} {n / t:.1f}" for k, (t, n) in totals.items()),
            flush=True)
    return totals


def cli_runner(onnx: Path, precision: str = "fp32"):
    """`artstyle predict DIR` as a user runs it: a new process per call, CSV written to a file."""
    def run(files: list[Path], folder: Path) -> float:
        out = folder.with_suffix(f".{precision}.csv")
        cmd = [sys.executable, "-m", "artstyle", "predict", str(folder), "--model", str(onnx),
               "--precision", precision, "--format", "csv", "-o", str(out), "--no-progress"]
        seconds = timed(lambda: subprocess.run(cmd, check=True))
        rows = out.read_text().count("\n") - 1
        assert rows == len(files), f"expected {len(files)} rows, got {rows}"
        return seconds
    return run


def fresh(load, use):
    """Calls ``use`` on an object that lives only for this call. A live ONNX Runtime session or
    torch model in this process slows the `artstyle predict` subprocesses it starts 2-3x on some
    machines (2-core AMD EPYC VMs: 12 s alone, 25-37 s beside a session that has run, back to
    12 s once it is freed), so no path keeps one between its own timed calls."""
    obj = load()
    try:
        return use(obj)
    finally:
        del obj
        gc.collect()


def warmed(clf, files: list[Path]):
    """``clf`` after one batch per stream, so no timed path pays a session's first run."""
    from concurrent.futures import ThreadPoolExecutor

    batch = np.stack([clf.to_array(files[0])] * BATCH)
    with ThreadPoolExecutor(max_workers=clf.streams) as pool:
        list(pool.map(clf.run, [batch] * clf.streams))
    return clf


def predictor_runner(load, account: dict):
    """The in-process predictor, a fresh one per call (its load is not timed). Adds to
    ``account``: "in_model", the seconds spent inside ONNX Runtime (summed over the streams,
    divided by their number: near 100 % of the wall time means decoding keeps up);
    "model_cpu", the CPU seconds of those calls, read on the calling thread (complete when a
    stream has one thread); "cpu", the process's CPU seconds (over wall, near the core count: no
    core waits for another); "images"."""
    import threading

    lock = threading.Lock()  # the streams' threads all add to the one total
    account.update(in_model=0.0, model_cpu=0.0, cpu=0.0, images=0)

    def counting(clf):
        run_model = clf.run

        def counted(batch):
            tick, cpu_tick = time.perf_counter(), time.thread_time()
            out = run_model(batch)
            with lock:
                account["in_model"] += (time.perf_counter() - tick) / clf.streams
                account["model_cpu"] += time.thread_time() - cpu_tick
            return out
        clf.run = counted
        return clf

    def run(files, folder):
        def use(clf):
            tick = time.process_time()
            try:
                return timed(lambda: sum(1 for _ in clf.predict_iter(files)))
            finally:
                account["cpu"] += time.process_time() - tick
                account["images"] += len(files)
        return fresh(lambda: counting(warmed(load(), files)), use)
    return run


def model_only_runner(load, sample: list[Path], account: dict | None = None):
    """ONNX Runtime alone on already preprocessed batches, as many images as the chunk, with
    ``clf.streams`` calls at a time as the predictor makes them, a fresh classifier per call
    (loaded and warmed up untimed). Adds to ``account`` the model calls' CPU seconds, read on
    their own threads as ``predictor_runner`` reads them, the process's CPU seconds, the wall
    seconds and the images."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    account = account if account is not None else {}
    account.update(model_cpu=0.0, cpu=0.0, wall=0.0, images=0)
    lock = threading.Lock()

    def run(files, folder):
        def use(clf):
            arrays = np.stack([clf.to_array(f) for f in sample[:BATCH]])
            warmed(clf, sample)

            def call(batch):
                tick = time.thread_time()
                out = clf.run(batch)
                with lock:
                    account["model_cpu"] += time.thread_time() - tick
                return out

            calls = max(1, round(len(files) / BATCH))
            with ThreadPoolExecutor(max_workers=clf.streams) as pool:
                tick = time.process_time()
                seconds = timed(lambda: list(pool.map(call, [arrays] * calls)))
            account["cpu"] += time.process_time() - tick
            account["wall"] += seconds
            account["images"] += calls * BATCH
            return seconds * len(files) / (calls * BATCH)
        return fresh(load, use)
    return run


def cpu_accounting(e2e: dict, e2e_seconds: float, model_only: dict) -> dict:
    """Where the end-to-end path's CPU went, and the end to end over model-only it implies."""
    share = e2e["model_cpu"] / e2e["cpu"]
    cores = e2e["cpu"] / e2e_seconds
    cores_model_only = model_only["cpu"] / model_only["wall"]
    return {
        "model_cpu_ms_per_image_end_to_end": round(e2e["model_cpu"] / e2e["images"] * 1000, 3),
        "model_cpu_ms_per_image_model_only": round(model_only["model_cpu"] / model_only["images"] * 1000, 3),
        "process_cpu_ms_per_image_end_to_end": round(e2e["cpu"] / e2e["images"] * 1000, 3),
        "model_share_of_cpu_end_to_end": round(share, 3),
        "cores_busy_end_to_end": round(cores, 2),
        "cores_busy_model_only": round(cores_model_only, 2),
        "implied_end_to_end_over_model_only": round(share * cores / cores_model_only, 3),
    }


def naive_runner(checkpoint: Path):
    """What a first script does: the timm model in eager PyTorch, every image fully decoded
    (the model loaded afresh, untimed, for each call)."""
    import torch

    from artstyle.engine.checkpoint import load_model
    from artstyle.images import open_image
    from artstyle.preprocess import preprocess

    def run(files, folder):
        def use(loaded):
            model, spec, _ = loaded

            def go():
                with torch.inference_mode():
                    for chunk in batches(files):
                        x = np.stack([preprocess(open_image(f), spec.image_size, spec.mean, spec.std, spec.crop_pct)
                                      for f in chunk])
                        torch.softmax(model(torch.from_numpy(x)), 1).numpy()
            return timed(go)
        return fresh(lambda: load_model(checkpoint), use)
    return run


def anime_or_not_model():
    try:
        import anime_or_not
    except ImportError:
        return None
    return Path(anime_or_not.__file__).parent / "anime_or_not_model.onnx"


def anime_or_not_batched_runner(model_path: Path):
    """anime-or-not's model and transforms, used well: one session, batches of 32."""
    import onnxruntime as ort
    import torchvision.transforms as T
    from PIL import Image

    transform = T.Compose([T.Resize((224, 224)), T.ToTensor(), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])

    def run(files, folder):
        def use(session):
            name = session.get_inputs()[0].name

            def go():
                for chunk in batches(files):
                    x = np.stack([transform(Image.open(f).convert("RGB")).numpy() for f in chunk])
                    session.run(None, {name: x})
            return timed(go)
        return fresh(lambda: ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"]), use)
    return run


def anime_or_not_published_runner(accepted: list[Path], per_round: int):
    """``anime_or_not.predict_image`` as published: a new ONNX session per call, and only images
    larger than 224 px (it asserts so), hence a few accepted images per round."""
    from anime_or_not import predict_image

    queue = iter(accepted)

    def run(files, folder):
        sample = [f for _, f in zip(range(per_round), queue)]
        return timed(lambda: [predict_image(str(f)) for f in sample]), len(sample)
    return run


def cold_start(onnx: Path | None, image: Path, repeats: int = 5) -> list[float]:
    cmd = [sys.executable, "-m", "artstyle", "predict", str(image)] + (["--model", str(onnx)] if onnx else [])
    return [timed(lambda: subprocess.run(cmd, check=True, capture_output=True)) for _ in range(repeats)]


PREDICT_ONLY = """
import argparse, sys
from artstyle.commands import predict
parser = argparse.ArgumentParser(prog="artstyle")
predict.register(parser.add_subparsers(dest="command", required=True))
args = parser.parse_args(sys.argv[1:])
sys.exit(args.func(args))
"""


def cold_start_predict_path_only(onnx: Path, image: Path, repeats: int = 5) -> list[float]:
    """The same answer with only the predict command registered: what cold start is when no
    other command's parser set-up imports heavy modules."""
    cmd = [sys.executable, "-c", PREDICT_ONLY, "predict", str(image), "--model", str(onnx)]
    return [timed(lambda: subprocess.run(cmd, check=True, capture_output=True)) for _ in range(repeats)]


def parser_build_times(repeats: int = 3) -> list[float]:
    """Process start + building the CLI parser alone: the share of cold start before any model work."""
    cmd = [sys.executable, "-c", "from artstyle.cli import build_parser; build_parser()"]
    return [timed(lambda: subprocess.run(cmd, check=True)) for _ in range(repeats)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2,
                        help="chunks of the images; every path runs on each chunk in turn, so all see the same load")
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--results", default=str(RESULTS), help="where to write the JSON (default bench/results/predict.json)")
    parser.add_argument("--model", help="an exported .onnx (default: the shipped model, else a fresh Lite0 at 224)")
    args = parser.parse_args()

    import artstyle
    from artstyle.infer.predictor import DEFAULT_MODEL, int8_path, read_card

    info = {"machine": machine(), "images": args.images, "rounds": args.rounds, "data": str(args.data), "batch": BATCH}
    onnx, checkpoint, description = bench_model(args.model)
    clf = artstyle.load(onnx, precision="fp32")
    onnx = clf.path
    int8_onnx = int8_path(onnx)
    has_int8 = int8_onnx.is_file()
    load_fp32 = lambda: artstyle.load(onnx, precision="fp32")  # noqa: E731
    load_int8 = lambda: artstyle.load(int8_onnx)  # noqa: E731
    # The int8 model as the predictor ran it before streams: one batch at a time, every thread on it.
    load_int8_one_stream = lambda: artstyle.load(int8_onnx, streams=1)  # noqa: E731
    info["model"] = {"description": description, "image_size": clf.image_size, "arch": clf.card.get("arch"),
                     "onnx_sha256": clf.card["onnx_sha256"], "streams": clf.streams,
                     "ort_intra_op_threads_per_stream": clf.session.get_session_options().intra_op_num_threads,
                     "decode_workers": clf.workers}
    image_size = clf.image_size
    del clf  # see fresh(): no session stays alive while the CLI paths run
    work = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    files = pick_images(Path(args.data), args.images)
    n = len(files)
    chunks = [files[i::args.rounds] for i in range(args.rounds)]
    folders = [link_chunk(chunk, work / f"chunk{i}") for i, chunk in enumerate(chunks)]
    print(f"{n} images in {args.rounds} rounds, model: {description} ({image_size}px), "
          f"{info['machine']['nproc']} CPUs ({info['machine']['cpu']}), load {info['machine']['load_average_at_start']}",
          flush=True)

    accounts = {k: {} for k in ("fp32", "int8", "int8_one_stream", "fp32_model_only", "int8_model_only")}
    runners = {
        "artstyle_predict_cli": ("`artstyle predict DIR` (process start to CSV written)", cli_runner(onnx)),
        "predictor_in_process": ("predictor end-to-end, in process (decode + inference)",
                                 predictor_runner(load_fp32, accounts["fp32"])),
        "ort_model_only": (f"ONNX Runtime model only, batch {BATCH}, {image_size}px",
                           model_only_runner(load_fp32, files, accounts["fp32_model_only"])),
        "naive_torch": (f"naive: timm eager PyTorch, full PIL decode, batch {BATCH}", naive_runner(checkpoint)),
    }
    if has_int8:
        card_int8 = read_card(int8_onnx)
        info["model"]["int8"] = {"onnx_sha256": card_int8["onnx_sha256"],
                                 "quantization": {k: card_int8["quantization"].get(k) for k in
                                                  ("calibration_method", "calibration_images", "top1_agreement",
                                                   "max_prob_diff", "holdout_images")}}
        runners.update({
            "artstyle_predict_cli_int8": ("`artstyle predict DIR --precision int8` (process start to CSV written)",
                                          cli_runner(onnx, "int8")),
            "predictor_in_process_int8": ("int8 predictor end-to-end, in process",
                                          predictor_runner(load_int8, accounts["int8"])),
            "ort_model_only_int8": (f"ONNX Runtime int8 model only, batch {BATCH}, {image_size}px",
                                    model_only_runner(load_int8, files, accounts["int8_model_only"])),
            "predictor_in_process_int8_one_stream": ("int8 predictor end-to-end, in process, streams=1",
                                                     predictor_runner(load_int8_one_stream,
                                                                      accounts["int8_one_stream"])),
            "ort_model_only_int8_one_stream": (f"ONNX Runtime int8 model only, streams=1, batch {BATCH}",
                                               model_only_runner(load_int8_one_stream, files)),
        })
    aon = anime_or_not_model()
    notes = {}
    if aon:
        from PIL import Image

        runners["anime_or_not_batched"] = ("anime-or-not model, one session, batch 32 (its transforms)",
                                           anime_or_not_batched_runner(aon))
        accepted = [f for f in files if min(Image.open(f).size) > 224]
        runners["anime_or_not_published"] = ("anime-or-not `predict_image()` as published",
                                             anime_or_not_published_runner(accepted, 10))
        notes["anime_or_not_published"] = f"a new session per call; accepts only images > 224 px: {len(accepted)} of {n}"
    else:
        info["anime_or_not"] = "not installed (pip install anime-or-not)"

    totals = interleaved({key: run for key, (_, run) in runners.items()}, chunks, folders)

    rows = {key: {"what": runners[key][0], "images": count, "seconds": round(seconds, 2),
                  "images_per_s": round(count / seconds, 1), "note": notes.get(key, "")}
            for key, (seconds, count) in totals.items()}

    cold = cold_start(onnx, files[0])
    cold_int8 = cold_start(int8_onnx, files[0]) if has_int8 else None
    cold_default = cold_start(None, files[0]) if onnx == DEFAULT_MODEL else None
    info["cold_start_s"] = {"model_given": [round(t, 3) for t in cold], "median": round(statistics.median(cold), 3),
                            "of_which_start_and_cli_parser_median": round(statistics.median(parser_build_times()), 3),
                            "predict_command_only_median": round(statistics.median(cold_start_predict_path_only(onnx, files[0])), 3)}
    if cold_default:
        info["cold_start_s"]["default_model_median"] = round(statistics.median(cold_default), 3)
    if cold_int8:
        info["cold_start_s"]["int8_model_median"] = round(statistics.median(cold_int8), 3)
    # Share of the in-process predictor's wall time spent inside ONNX Runtime.
    predictor_key = {k: "predictor_in_process" + ("" if k == "fp32" else f"_{k}") for k in ("fp32", "int8", "int8_one_stream")}
    timed_paths = {k: key for k, key in predictor_key.items() if key in totals}
    info["in_model_share"] = {k: round(accounts[k]["in_model"] / totals[key][0], 3) for k, key in timed_paths.items()}
    info["cores_used"] = {k: round(accounts[k]["cpu"] / totals[key][0], 2) for k, key in timed_paths.items()}
    # With one thread per stream, the model calls' CPU is all on their own threads.
    info["cpu_accounting"] = {k: cpu_accounting(accounts[k], totals[predictor_key[k]][0], accounts[f"{k}_model_only"])
                              for k in ("int8", "fp32") if predictor_key[k] in totals and
                              info["model"]["ort_intra_op_threads_per_stream"] == 1}

    cli = rows["artstyle_predict_cli"]["images_per_s"]
    ratios = {
        "cli_vs_naive": round(cli / rows["naive_torch"]["images_per_s"], 2),
        "e2e_over_model_only": round(rows["predictor_in_process"]["images_per_s"] / rows["ort_model_only"]["images_per_s"], 3),
        "cli_over_model_only": round(cli / rows["ort_model_only"]["images_per_s"], 3),
    }
    if has_int8:
        cli_int8 = rows["artstyle_predict_cli_int8"]["images_per_s"]
        ratios.update({
            "int8_vs_fp32_model_only": round(rows["ort_model_only_int8"]["images_per_s"] / rows["ort_model_only"]["images_per_s"], 2),
            "cli_int8_vs_naive": round(cli_int8 / rows["naive_torch"]["images_per_s"], 2),
            "e2e_int8_over_int8_model_only": round(rows["predictor_in_process_int8"]["images_per_s"]
                                                   / rows["ort_model_only_int8"]["images_per_s"], 3),
            "cli_int8_over_int8_model_only": round(cli_int8 / rows["ort_model_only_int8"]["images_per_s"], 3),
            "int8_model_only_streams_vs_one_stream": round(rows["ort_model_only_int8"]["images_per_s"]
                                                          / rows["ort_model_only_int8_one_stream"]["images_per_s"], 2),
            "int8_e2e_streams_vs_one_stream": round(rows["predictor_in_process_int8"]["images_per_s"]
                                                   / rows["predictor_in_process_int8_one_stream"]["images_per_s"], 2),
            "e2e_int8_one_stream_over_its_model_only": round(
                rows["predictor_in_process_int8_one_stream"]["images_per_s"]
                / rows["ort_model_only_int8_one_stream"]["images_per_s"], 3),
        })
    if aon:
        ratios["cli_vs_anime_or_not_batched"] = round(cli / rows["anime_or_not_batched"]["images_per_s"], 2)
        ratios["cli_vs_anime_or_not_published"] = round(cli / rows["anime_or_not_published"]["images_per_s"], 2)
    info["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    info.update(results=rows, ratios=ratios)
    write_results(args.results, info)
    print_table(info)


def print_table(info: dict) -> None:
    m = info["machine"]
    print(f"\n{info['images']} images from artstyle-v1 in {info['rounds']} interleaved rounds; model: {info['model']['description']}, "
          f"{info['model']['image_size']} px; {m['nproc']} CPUs ({m['cpu']}), load average at start {m['load_average_at_start']}, "
          f"at end {info['load_average_at_end']}\n")
    print("| path | images | seconds | images/s |\n|---|---:|---:|---:|")
    for row in info["results"].values():
        note = f" ({row['note']})" if row["note"] else ""
        print(f"| {row['what']}{note} | {row['images']} | {row['seconds']} | {row['images_per_s']} |")
    cold = info["cold_start_s"]
    print(f"\ncold start `artstyle predict one.jpg`: median {cold['median']} s of {cold['model_given']} "
          f"(python start + building the full CLI parser alone: {cold['of_which_start_and_cli_parser_median']} s; "
          f"with only the predict command registered: {cold['predict_command_only_median']} s)"
          + (f"; with the default model {cold['default_model_median']} s" if "default_model_median" in cold else "")
          + (f"; int8 model {cold['int8_model_median']} s" if "int8_model_median" in cold else ""))
    print(f"share of the in-process predictor's time inside ONNX Runtime: {info.get('in_model_share')}; "
          f"cores it kept busy: {info.get('cores_used')}")
    print("ratios: " + ", ".join(f"{k} = {v}" for k, v in info["ratios"].items()))
    for name, counted in info.get("cpu_accounting", {}).items():
        print(f"{name}: " + ", ".join(f"{k} = {v}" for k, v in counted.items()))


if __name__ == "__main__":
    main()
