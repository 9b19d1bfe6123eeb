"""Outputs checked against inputs: a job never writes over a file it reads."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether ``a`` and ``b`` name one file (through links too; by path when one is absent)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def output_over_input(
    outputs: Iterable[str | Path], inputs: Iterable[str | Path]
) -> tuple[Path, Path] | None:
    """The first (output, input) pair that is one file, or None when no output is an input."""
    inputs = list(inputs)
    for output in outputs:
        for source in inputs:
            if same_file(output, source):
                return Path(output), Path(source)
    return None
