"""The PyTorch side of artstyle: training, evaluation, comparison (needs ``artstyle[train]``).

The names below load their modules on first use (PEP 562), so that importing one light module
of the engine (``artstyle.engine.calibration``: numpy and scipy) does not import torch."""

import importlib
import sys
import types

_EXPORTS = {"TrainResult": "trainer", "train": "trainer", "evaluate": "evaluate"}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


def __dir__():
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """Importing a submodule records it on its package (``engine.evaluate = <module>``), which
    would hide the function of the same name from ``__getattr__`` once anything (the trainer)
    has imported that module: the public name stays the function, as it was before."""

    def __setattr__(self, name, value):
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
