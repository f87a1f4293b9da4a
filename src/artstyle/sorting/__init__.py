"""Sort images into class folders with a classifier: ``artstyle sort`` and ``artstyle.sort()``.

    >>> import artstyle
    >>> records = artstyle.sort("photos", "sorted", mode="copy")   # sorted/anime/..., sorted/human/...
    >>> artstyle.sort_undo("sorted")                                 # and back

Standard library only at import; the predictor is loaded when there is something to classify.
"""

from ._log import LOG_NAME
from ._sorter import MODES, SortInput, SortRecord, collect_inputs, sort, sort_iter, undo, undo_iter

__all__ = ["LOG_NAME", "MODES", "SortInput", "SortRecord", "collect_inputs", "sort", "sort_iter", "undo",
           "undo_iter"]
