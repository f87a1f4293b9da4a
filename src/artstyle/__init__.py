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


__all__ = ["ArtstyleError", "ImageLoadError", "load", "open_image", "__version__"]
