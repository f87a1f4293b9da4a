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

# ONNX + model card (classes, preprocessing, test metrics, sha256), parity-checked against
# PyTorch; --with-weights keeps the checkpoint beside it for `predict --explain`.
artstyle export "$RUN" -o src/artstyle/assets/default.onnx --with-weights
