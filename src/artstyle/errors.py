"""Error types. Anything raised as an ``ArtstyleError`` is a user's mistake or bad input:
the CLI prints its message on one line and never a traceback."""

from __future__ import annotations

# Exit status of a batch command when some inputs failed and the others were done (predict,
# predict --explain); here so that both commands share it without importing each other.
EXIT_SOME_FAILED = 2


class ArtstyleError(Exception):
    """A problem the user can fix (bad input, bad flag, missing file)."""


class ImageLoadError(ArtstyleError):
    """An image that cannot be decoded. Carries the offending path and the reason."""

    def __init__(self, path: object, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
