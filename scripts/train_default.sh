#!/usr/bin/env bash
# How the shipped default model (src/artstyle/assets/default.{onnx,json,safetensors}) is made.
# Needs artstyle[train] and the artstyle-v1 data beside the repository. On this project's 2-core
# CPU machine the training takes about an hour; with a GPU a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/artstyle-v1}
RUN=${2:-runs/default-lite0-150}

# EfficientNet-Lite0 from ImageNet (offline weights), 150 px, batch 32, one head-only epoch then
# full fine-tuning, AdamW 1e-3, label smoothing 0.1, strong anti-shortcut augmentation (random
# resized crops, borders, rescaling, JPEG re-compression, colour jitter, grayscale), leak-free split.
artstyle train "$DATA" -o "$RUN" --backbone efficientnet_lite0 --image-size 150 --epochs 5 --patience 3

# The run's held-out test split, paths relative to the data folder, for the tests to read
# (tests/test_default_model.py): the split is read back, never recomputed.
python - "$DATA" "$RUN" <<'PY'
import sys
from pathlib import Path

import pandas as pd

data, run = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
test = pd.read_csv(run / "data" / "test.csv")[["path", "label"]]
test["path"] = [str(Path(p).resolve().relative_to(data)) for p in test["path"]]
test.to_csv("tests/data/default_test_split.csv", index=False)
PY

# ONNX + model card (classes, preprocessing, test metrics, sha256), parity-checked against
# PyTorch; --with-weights keeps the checkpoint beside it for `predict --explain`.
artstyle export "$RUN" -o src/artstyle/assets/default.onnx --with-weights
