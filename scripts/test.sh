#!/usr/bin/env bash
# Everything the test suite needs on a fresh machine, then the linter and the whole suite.
# torch/torchvision come from the wheels on this machine's disk (pip on Python 3.11 finds them);
# the browser test drives Debian's Chromium (playwright cannot download browsers here); the video
# tests write H.264 and audio-only files with Debian's ffmpeg (OpenCV's writer makes neither).
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
python -m pip install -q torch==2.14.1 torchvision==0.29.1 -e ".[all]"
if [ -n "${CI_PIP_FREEZE:-}" ]; then
    echo "--- pip freeze"; python -m pip freeze; echo "---"
fi
python -m ruff check src tests bench scripts
exec python -m pytest "$@"
