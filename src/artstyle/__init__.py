"""artstyle: tell anime, cartoon and human (photo) images apart, and fine-tune any
folder-of-images classifier.

The top-level import stays light (no torch, no pandas) so that ``artstyle predict`` starts fast.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import ArtstyleError, ImageLoadError
from .images import open_image

__all__ = ["ArtstyleError", "ImageLoadError", "open_image", "__version__"]
