"""Errors that name the file and the problem, so a person can act on them."""

from __future__ import annotations

from pathlib import Path


class SpectrumError(ValueError):
    """A file that cannot become a usable spectrum.

    Attributes
    ----------
    path
        The file at fault.
    reason
        What is wrong with it, in words a person understands.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
