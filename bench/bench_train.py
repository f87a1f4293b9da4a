"""Training speed on this machine: a whole probe-mode run (scan, split, feature extraction, head,
test evaluation) and the fine-tuning throughput of the real training loop (real images, strong
augmentation, data loader), from which CPU minutes per epoch follow.

    python bench/bench_train.py [--data ../shared/data/artstyle-v1] [--steps 30]

Prints a Markdown table and writes bench/results/train.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _provenance import write_results

from artstyle.config import TrainConfig
from artstyle.engine.data import ImageDataset, build_loader, default_workers, resolve_splits
from artstyle.engine.distributed import DistInfo
from artstyle.engine.loop import train_one_epoch
from artstyle.engine.transforms import create_train_transform
from artstyle.models import create_model

ROOT = Path(__file__).resolve().parents[1]


def time_probe_run(data: Path, out: Path) -> dict:
    """The whole `artstyle train --mode probe` command, and the test accuracy it reaches."""
    tick = time.perf_counter()
    subprocess.run([sys.executable, "-m", "artstyle", "train", str(data), "-o", str(out), "--mode", "probe"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - tick
    test = json.loads((out / "test" / "metrics.json").read_text())
    return {"seconds": seconds, "test_accuracy": test["accuracy"], "test_images": test["n"]}


def finetune_throughput(data: Path, split_dir: Path, steps: int, image_size: int) -> dict:
    """images/s of full fine-tuning (all layers trainable) over `steps` real batches."""
    cfg = TrainConfig(image_size=image_size)
    frames = resolve_splits(data, split_dir, val=cfg.val, test=cfg.test, seed=cfg.seed)
    model, spec = create_model(cfg.backbone, sorted(frames["train"]["label"].unique()), image_size=image_size)
    model = model.to(memory_format=torch.channels_last)
    subset = frames["train"].sample(steps * cfg.batch_size, random_state=0)
    dataset = ImageDataset(subset, spec.classes, create_train_transform(cfg, spec), image_size)
    loader = build_loader(dataset, batch_size=cfg.batch_size, train=True, workers=default_workers(-1), seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    tick = time.perf_counter()
    row = train_one_epoch(model, criterion, optimizer, loader, torch.device("cpu"), epoch=0, info=DistInfo(),
                          channels_last=True)
    seconds = time.perf_counter() - tick
    per_s = len(dataset) / seconds
    return {"image_size": image_size, "images": len(dataset), "seconds": seconds, "images_per_s": per_s,
            "data_wait_frac": row["data_wait_frac"],
            "minutes_per_epoch_4470_images": len(frames["train"]) / per_s / 60}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/artstyle-v1")
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    results = {"machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                           "torch": torch.__version__, "load_average_before": os.getloadavg()}}
    with tempfile.TemporaryDirectory() as tmp:
        results["probe_run"] = time_probe_run(args.data, Path(tmp) / "probe")
        results["finetune"] = [finetune_throughput(args.data, Path(tmp) / "split", args.steps, size)
                               for size in (150, 224)]
    out = ROOT / "bench/results/train.json"
    write_results(out, results)
    probe = results["probe_run"]
    print(f"| measurement | value |\n|---|---|\n| probe run, whole (scan..test report) | "
          f"{probe['seconds'] / 60:.1f} min, test accuracy {probe['test_accuracy']:.4f} |")
    for ft in results["finetune"]:
        print(f"| fine-tune {ft['image_size']} px | {ft['images_per_s']:.1f} img/s, "
              f"{ft['minutes_per_epoch_4470_images']:.1f} CPU min/epoch, data wait {ft['data_wait_frac']:.0%} |")


if __name__ == "__main__":
    main()
