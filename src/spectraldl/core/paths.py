"""Paths compared: a job never writes over a file it reads; what lies within given folders."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
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


def first_repeated(paths: Iterable[str | Path]) -> tuple[str | Path, str | Path] | None:
    """The first of ``paths`` naming a file an earlier one names too (however spelled), with
    that earlier one; None when each names its own. Its rows would count twice."""
    seen: dict[Path, str | Path] = {}
    for raw in paths:
        key = Path(raw).resolve()
        if key in seen:
            return raw, seen[key]
        seen[key] = raw
    return None


def within(path: str, roots: Sequence[str]) -> bool:
    """Whether ``path`` is one of ``roots`` or lies in one of them (as text: make both
    absolute, or real, first)."""
    return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in roots)
