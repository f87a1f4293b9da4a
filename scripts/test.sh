#!/usr/bin/env bash
# Everything the test suite needs on a fresh machine, then the whole suite.
# torch/torchvision come from the wheels on this machine's disk (pip on Python 3.11 finds them).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q torch==2.14.1 torchvision==0.29.1 -e ".[all]"
exec python -m pytest "$@"
