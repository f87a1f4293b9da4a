"""Shared fixtures: the real artstyle-v1 images (when present) and a corpus of bad files."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).parent
sys.path.insert(0, str(TESTS_DIR))  # so tests can `from corpus import make_bad_corpus`

from corpus import make_bad_corpus  # noqa: E402

# The shared data lives beside the repository, never inside it (third-party images).
SHARED_DATA = Path(__file__).parents[1].parent / "shared" / "data" / "artstyle-v1"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real artstyle-v1 dataset (6,385 images in anime/, cartoon/, human/)."""
    if not (SHARED_DATA / "anime").is_dir():
        pytest.skip(f"real data not present at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_subset(shared_data, tmp_path_factory) -> Path:
    """A small real dataset: links to the first 20 images of each artstyle-v1 class."""
    root = tmp_path_factory.mktemp("artstyle-v1-subset")
    for class_dir in sorted(p for p in shared_data.iterdir() if p.is_dir()):
        (root / class_dir.name).mkdir()
        for image in sorted(class_dir.glob("*.jpg"))[:20]:
            os.symlink(image, root / class_dir.name / image.name)
    return root


@pytest.fixture
def bad_corpus(tmp_path) -> dict[str, Path]:
    """Every bad or awkward image file of the robustness issue, written into a temp folder."""
    return make_bad_corpus(tmp_path / "corpus")


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """A real Lite0 (packaged ImageNet weights, untrained head) exported to ONNX, once per session."""
    for extra in ("torch", "timm"):
        pytest.importorskip(extra, reason="exporting a model needs the train extra: pip install 'artstyle[train]'")
    from predict_support import exported_model

    return exported_model(tmp_path_factory)


@pytest.fixture(scope="session")
def shipped(tmp_path_factory):
    """The shipped fp32 model as model.onnx (card and weights beside it): no torch needed."""
    from predict_support import shipped_model

    return shipped_model(tmp_path_factory)
