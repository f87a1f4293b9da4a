"""The PyTorch side of artstyle: training, evaluation, comparison (needs ``artstyle[train]``).

The names below load their modules on first use (PEP 562), so that importing one light module
of the engine (``artstyle.engine.calibration``: numpy and scipy) does not import torch."""

import sys
import types

from .._lazy import lazy_exports

_EXPORTS = {"TrainResult": "trainer", "train": "trainer", "evaluate": "evaluate"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


class _Package(types.ModuleType):
    """Importing a submodule records it on its package (``engine.evaluate = <module>``), which
    would hide the function of the same name from ``__getattr__`` once anything (the trainer)
    has imported that module: the public name stays the function, as it was before."""

    def __setattr__(self, name, value):
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
