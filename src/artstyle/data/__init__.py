"""Dataset tools behind ``artstyle data``: scan a class-per-folder dataset into a manifest, split it
without leakage, show samples and audit it. Every function returns pandas objects for notebooks::

    from artstyle import data
    manifest = data.scan("photos/", "manifest.csv")     # one row per image file
    parts = data.split(manifest, "splits/")              # {'train': df, 'val': df, 'test': df}
    data.show(manifest, "samples.png")
    summary = data.audit(manifest, "audit/")             # audit.md, charts, shortcut check

Needs the ``data`` extra (pandas, imagehash, scikit-learn, matplotlib); ``import artstyle`` alone
never imports them. matplotlib and scikit-learn load only when show/audit run.
"""

from __future__ import annotations

from .auditor import audit
from .duplicates import DEFAULT_PHASH_THRESHOLD, duplicate_groups, near_duplicate_pairs
from .gallery import show
from .manifest import MANIFEST_COLUMNS, SPLITS, read_classes, read_manifest
from .measure import inspect_file
from .scanner import find_images, scan
from .splitter import SplitResult, read_split, split

__all__ = [
    "DEFAULT_PHASH_THRESHOLD",
    "MANIFEST_COLUMNS",
    "SPLITS",
    "SplitResult",
    "audit",
    "duplicate_groups",
    "find_images",
    "inspect_file",
    "near_duplicate_pairs",
    "read_classes",
    "read_manifest",
    "read_split",
    "scan",
    "show",
    "split",
]
