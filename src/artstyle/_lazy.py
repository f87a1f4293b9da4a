"""Packages whose public names load their modules on first use (PEP 562), so that importing one
light module of a package does not import the heavy ones beside it."""

from __future__ import annotations

import importlib
import sys


def lazy_exports(package: str, exports: dict[str, str]):
    """``__getattr__`` and ``__dir__`` for ``package``, whose name ``n`` lives in its module
    ``exports[n]``."""
    def get_attribute(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f".{exports[name]}", package), name)

    def list_names() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return get_attribute, list_names
