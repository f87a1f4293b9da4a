"""Dataset tools behind ``artstyle data``: scan a class-per-folder dataset into a manifest, split it
without leakage, show samples and audit it. Every function returns pandas objects for notebooks::

    from artstyle import data
    manifest = data.scan("photos/", "manifest.csv")     # one row per image file
    parts = data.split(manifest, "splits/")              # {'train': df, 'val': df, 'test': df}
    data.show(manifest, "samples.png")
    summary = data.audit(manifest, "audit/")             # audit.md, charts, shortcut check

Needs the ``data`` extra (pandas, imagehash, scikit-learn, matplotlib); ``import artstyle`` alone
never imports them. matplotlib and scikit-learn load only when show/audit run, and each name
below loads its module on first use (PEP 562): ``artstyle.data.manifest`` alone imports pandas only.
"""

from .._lazy import lazy_exports

_EXPORTS = {
    "audit": "auditor",
    "DEFAULT_PHASH_THRESHOLD": "duplicates", "duplicate_groups": "duplicates", "near_duplicate_pairs": "duplicates",
    "show": "gallery",
    "MANIFEST_COLUMNS": "manifest", "SPLITS": "manifest", "read_classes": "manifest", "read_manifest": "manifest",
    "inspect_file": "measure",
    "find_images": "scanner", "scan": "scanner",
    "SplitResult": "splitter", "read_split": "splitter", "split": "splitter",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
