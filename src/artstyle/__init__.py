"""artstyle: tell anime, cartoon and human (photo) images apart, and fine-tune any
folder-of-images classifier.

The top-level import stays light (no torch, no pandas) so that ``artstyle predict`` starts fast.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import ArtstyleError, ImageLoadError
from .images import open_image



def load(model=None, **options):
    """Load a classifier (default: the shipped model; or an exported ``.onnx``) for
    ``.predict(image_or_path_or_many)``. See ``artstyle.infer.load`` for the options."""
    from .infer import load as load_classifier  # lazy: onnxruntime only when predicting

    return load_classifier(model, **options)


def sort(src, dest, **options):
    """Classify images and copy, move or link them into ``dest/<label>/``, logged so that
    ``sort_undo(dest)`` reverses it. See ``artstyle.sorting.sort`` for the options."""
    from .sorting import sort as sort_files  # lazy: the predictor only when sorting

    return sort_files(src, dest, **options)


def sort_undo(dest, **options):
    """Reverse what ``sort`` did in ``dest``. See ``artstyle.sorting.undo``."""
    from .sorting import undo

    return undo(dest, **options)


__all__ = ["ArtstyleError", "ImageLoadError", "load", "open_image", "sort", "sort_undo", "__version__"]
