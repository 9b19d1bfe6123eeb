"""Errors that name the file and the problem, so a person can act on them."""

from __future__ import annotations

import os
from dataclasses import dataclass
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


@dataclass(frozen=True)
class FileError:
    """An input that did not make it into the output, and why."""

    path: str
    reason: str


def printable_path(path: str) -> str:
    """``path`` as text that can be written anywhere: bytes that are not UTF-8 as ``\\xNN``.

    File names are bytes; Python keeps the undecodable ones as lone surrogates,
    which no UTF-8 file (an errors CSV, an HDF5 string) can hold.
    """
    return os.fsencode(path).decode("utf-8", "backslashreplace")
